"""Three `secretstore serve` processes on one PostgreSQL database, through stripe-python, as an
app backend behind a load balancer sees them (docs/api.md §8): they are one store.

- a secret set through one server is found through the others at once;
- a replace or a delete through one is never answered stale by another (no server answers
  from a cache another's write has made stale);
- list pages agree on every server, and a cursor from one pages on another;
- an idempotency key reused through another server is replayed, and concurrent uses of one
  key through different servers run the request once;
- the expiry sweep runs on all three without doing the work twice and without errors.

The database is a scratch one on the test server (SECRETSTORE_TEST_DATABASE_URL, default
postgres://root@127.0.0.1:5432/test), created and dropped with `psql`.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import re
import subprocess
import time
import uuid

import pytest
import stripe

from harness import Server, payload, unique

SERVER_URL = os.environ.get("SECRETSTORE_TEST_DATABASE_URL", "postgres://root@127.0.0.1:5432/test")
KEY = "sk_test_pgcluster"
ACCOUNT = {"type": "account"}


def psql(url: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], capture_output=True, text=True
    )
    assert done.returncode == 0, f"psql: {done.stderr}"
    return done.stdout.strip()


def with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="module")
def database():
    if os.environ.get("SECRETSTORE_SKIP_POSTGRES_TESTS", "") in ("1", "true", "yes"):
        pytest.skip("SECRETSTORE_SKIP_POSTGRES_TESTS is set")
    name = "secretstore_test_" + uuid.uuid4().hex[:16]
    psql(SERVER_URL, f"CREATE DATABASE {name}")
    yield with_database(SERVER_URL, name)
    psql(SERVER_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def servers(database, tmp_path_factory):
    root = tmp_path_factory.mktemp("postgres")
    # One root key for the three: they share one database.
    root_key = base64.b64encode(os.urandom(32)).decode()
    started = [
        Server(
            root / f"data{n}",
            root / f"server{n}.log",
            extra_args=["--database-url", database, "--sweep-interval", "1"],
            env={"SECRETSTORE_ROOT_KEY": root_key},
        ).start()
        for n in range(3)
    ]
    yield started
    for server in started:
        assert server.stop() == 0, server.log_tail()


def clients(servers, retries: int = 0):
    return [
        stripe.StripeClient(KEY, base_addresses={"api": s.url}, max_network_retries=retries)
        for s in servers
    ]


def fresh_account() -> dict:
    return {"stripe_account": "acct_" + uuid.uuid4().hex[:16]}


def test_a_secret_set_through_one_server_is_found_through_the_others_at_once(servers):
    every = clients(servers)
    for n, writer in enumerate(every):
        opts, name, value = fresh_account(), unique(), payload(f"from-{n}")
        writer.v1.apps.secrets.create(params={"name": name, "payload": value, "scope": ACCOUNT}, options=opts)
        for reader in every:
            found = reader.v1.apps.secrets.find(
                params={"name": name, "scope": ACCOUNT, "expand": ["payload"]}, options=opts
            )
            assert found.payload == value


def test_a_replace_or_delete_is_never_answered_stale_by_another_server(servers):
    every = clients(servers)
    opts, name = fresh_account(), unique()
    for round_ in range(30):
        value = payload(f"v{round_}")
        every[round_ % 3].v1.apps.secrets.create(
            params={"name": name, "payload": value, "scope": ACCOUNT}, options=opts
        )
        for reader in every:
            found = reader.v1.apps.secrets.find(
                params={"name": name, "scope": ACCOUNT, "expand": ["payload"]}, options=opts
            )
            assert found.payload == value, f"round {round_}: a stale payload"
        if round_ % 5 == 4:
            every[(round_ + 1) % 3].v1.apps.secrets.delete_where(
                params={"name": name, "scope": ACCOUNT}, options=opts
            )
            for reader in every:
                with pytest.raises(stripe.InvalidRequestError) as missing:
                    reader.v1.apps.secrets.find(params={"name": name, "scope": ACCOUNT}, options=opts)
                assert missing.value.http_status == 404, "a deleted secret answered"


def test_list_pages_agree_on_every_server(servers):
    every = clients(servers)
    opts = fresh_account()
    scope = {"type": "user", "user": "usr_pages"}
    made = [
        every[n % 3].v1.apps.secrets.create(
            params={"name": unique(f"n{n}"), "payload": payload(), "scope": scope}, options=opts
        ).id
        for n in range(10)
    ]
    newest_first = list(reversed(made))
    for client in every:
        listed = [s.id for s in client.v1.apps.secrets.list(params={"scope": scope, "limit": 3}, options=opts).auto_paging_iter()]
        assert listed == newest_first
    # Page by page, each page from the next server, the cursor taken from the one before.
    seen, cursor, n = [], None, 0
    while True:
        params = {"scope": scope, "limit": 3}
        if cursor:
            params["starting_after"] = cursor
        page = every[n % 3].v1.apps.secrets.list(params=params, options=opts)
        seen += [s.id for s in page.data]
        n += 1
        if not page.has_more:
            break
        cursor = page.data[-1].id
    assert seen == newest_first


def test_an_idempotency_key_reused_through_another_server_is_replayed(servers):
    every = clients(servers)
    opts = {**fresh_account(), "idempotency_key": unique("idem")}
    params = {"name": unique(), "payload": payload(), "scope": ACCOUNT, "expand": ["payload"]}
    first = every[0].v1.apps.secrets.create(params=params, options=opts)
    again = every[1].v1.apps.secrets.create(params=params, options=opts)
    assert again.id == first.id and again.payload == first.payload
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    with pytest.raises(stripe.IdempotencyError):
        every[2].v1.apps.secrets.create(params={**params, "payload": payload()}, options=opts)


def test_concurrent_uses_of_one_key_through_different_servers_run_once(servers):
    # With retries, as the SDKs run by default: a use that finds the key in flight (409) waits
    # and is then replayed the answer of the one that ran.
    every = clients(servers, retries=8)
    for _ in range(5):
        opts = {**fresh_account(), "idempotency_key": unique("race")}
        params = {"name": unique(), "payload": payload(), "scope": ACCOUNT}

        def use(n: int):
            secret = every[n % 3].v1.apps.secrets.create(params=params, options=opts)
            return secret.id, secret.last_response.headers.get("Idempotent-Replayed") == "true"

        with concurrent.futures.ThreadPoolExecutor(max_workers=9) as pool:
            answers = list(pool.map(use, range(9)))
        ids = {secret_id for secret_id, _ in answers}
        ran = [replayed for _, replayed in answers if not replayed]
        assert len(ids) == 1, answers
        assert len(ran) == 1, f"the request ran {len(ran)} times: {answers}"


SWEPT = re.compile(r"swept expired secrets.*removed=(\d+)")


def test_the_expiry_sweep_runs_on_every_server_without_double_work_or_errors(servers, database):
    every = clients(servers)
    expires_at = int(time.time()) + 2
    made = 0
    for account in range(6):
        opts = fresh_account()
        for n in range(10):
            every[(account + n) % 3].v1.apps.secrets.create(
                params={"name": unique(), "payload": payload(), "scope": ACCOUNT, "expires_at": expires_at},
                options=opts,
            )
            made += 1
    before = sum(int(m) for s in servers for m in SWEPT.findall(s.log_path.read_text()))
    deadline = time.time() + 30
    while int(psql(database, f"SELECT count(*) FROM secrets WHERE expires_at <= {int(time.time())}")) > 0 or time.time() < expires_at + 1:
        assert time.time() < deadline, "expired secrets still stored 30 s later"
        time.sleep(0.5)
    # Give every server's next sweep a chance to run (and find nothing more to do).
    time.sleep(2)
    after = sum(int(m) for s in servers for m in SWEPT.findall(s.log_path.read_text()))
    assert after - before == made, f"the servers' sweeps removed {after - before} rows for {made} expired secrets"
    sweepers = [s for s in servers if SWEPT.search(s.log_path.read_text())]
    assert sweepers, "no server swept"
    for server in servers:
        log = server.log_path.read_text()
        assert "sweeping expired secrets failed" not in log, log
        assert " ERROR " not in log, log
