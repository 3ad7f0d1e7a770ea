"""Key rotation while the server serves, through stripe-python (contract §11; issue 11, items 3
and 4): 32 clients set, find, list and delete without pause while the operator rotates the root
key (a new key written over the key file, SIGHUP, `POST /v1/root_keys/rotate`) and then every
namespace's key (`POST /v1/namespace_keys/rotate`). Not one request may fail and no answer may
change: each client checks every find against what it last set, and every delete and list
against what it holds. Afterwards the old root key wraps nothing, and a restart with only the
new key serves every secret.
"""

import secrets as _random
import signal
import threading
import time

import stripe

from harness import unique
from test_python_production import owner_only, provision, start_production

CLIENTS = 32
NAMES_PER_CLIENT = 3
ACCOUNT = {"type": "account"}
CUSTOMER = "acct_customer"


class Client(threading.Thread):
    """One app backend's worker: its own names, a loop of set, find, list and delete."""

    def __init__(self, n: int, url: str, key: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.sdk = stripe.StripeClient(key, base_addresses={"api": url}, max_network_retries=0)
        self.names = [f"rot-{n}-{i}-{unique('k')}" for i in range(NAMES_PER_CLIENT)]
        self.held = {}  # name -> payload it was last set to
        self.stop = stop
        self.requests = 0
        self.failures = []
        self.opts = {"stripe_account": CUSTOMER}

    def fail(self, what: str) -> None:
        self.failures.append(what)

    def step(self, round_: int) -> None:
        name = self.names[round_ % NAMES_PER_CLIENT]
        secrets = self.sdk.v1.apps.secrets
        value = f"zqxPLAINTEXTzqx-{name}-{round_}"
        created = secrets.create(params={"name": name, "payload": value, "scope": ACCOUNT}, options=self.opts)
        self.requests += 1
        if created.name != name:
            self.fail(f"set {name} answered {created.name}")
        self.held[name] = value
        for held, expected in list(self.held.items()):
            found = secrets.find(params={"name": held, "scope": ACCOUNT, "expand": ["payload"]}, options=self.opts)
            self.requests += 1
            if found.payload != expected:
                self.fail(f"find {held}: {found.payload!r}, expected {expected!r}")
        listed = secrets.list(params={"scope": ACCOUNT, "limit": 100}, options=self.opts)
        self.requests += 1
        if not all(item.object == "apps.secret" for item in listed.data):
            self.fail("list answered something other than secrets")
        if round_ % 4 == 3:
            gone = self.names[(round_ + 1) % NAMES_PER_CLIENT]
            if gone in self.held:
                deleted = secrets.delete_where(params={"name": gone, "scope": ACCOUNT}, options=self.opts)
                self.requests += 1
                if deleted.deleted is not True or deleted.name != gone:
                    self.fail(f"delete {gone} answered {deleted}")
                del self.held[gone]
                try:
                    secrets.find(params={"name": gone, "scope": ACCOUNT}, options=self.opts)
                    self.fail(f"find {gone} after its delete answered a secret")
                except stripe.InvalidRequestError as e:
                    if e.http_status != 404:
                        self.fail(f"find {gone} after its delete: {e}")
                self.requests += 1

    def run(self) -> None:
        round_ = 0
        while not self.stop.is_set():
            try:
                self.step(round_)
            except Exception as e:  # every failure is counted, whatever its kind
                self.fail(f"round {round_}: {type(e).__name__}: {e}")
            round_ += 1


def wait_for_log(server, text: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while server.log_text().count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{server.log_tail()}"
        time.sleep(0.05)


def test_rotating_the_root_key_and_every_namespace_key_under_32_clients(tmp_path):
    server, admin, _ = start_production(
        tmp_path, extra=["--rate-limit", "0", "--max-secrets-per-scope", "10000"]
    )
    try:
        key = provision(admin)["key"]["secret"]
        before = admin.ok("GET", "/v1/root_keys")
        old_id = before["roots"][0]["id"]

        stop = threading.Event()
        clients = [Client(n, server.url, key, stop) for n in range(CLIENTS)]
        for client in clients:
            client.start()
        time.sleep(1.5)

        # A new root key version: written over the key file, read again on SIGHUP.
        reloads = server.log_text().count("root keys reloaded")
        owner_only(tmp_path / "root.key", _random.token_hex(32))
        server.proc.send_signal(signal.SIGHUP)
        wait_for_log(server, "root keys reloaded", reloads + 1)
        rotated = admin.ok("POST", "/v1/root_keys/rotate", {})
        assert rotated["rewrapped"] >= 3, rotated
        time.sleep(1.0)
        namespaces = admin.ok("POST", "/v1/namespace_keys/rotate", {"all": True})
        assert [n["account"] for n in namespaces["namespaces"]] == [CUSTOMER], namespaces
        assert namespaces["namespaces"][0]["version"] == 2, namespaces
        time.sleep(1.5)
        stop.set()
        for client in clients:
            client.join(timeout=60)

        failures = [f for c in clients for f in c.failures]
        requests = sum(c.requests for c in clients)
        assert requests > 1000, f"only {requests} requests in the run"
        print(f"{requests} requests by {CLIENTS} clients during both rotations, none failed")
        assert failures == [], f"{len(failures)} of {requests} requests failed or changed: {failures[:10]}"

        status = admin.ok("GET", "/v1/root_keys")
        old = [r for r in status["roots"] if r["id"] == old_id]
        assert old and old[0]["keys"] == 0 and not old[0]["active"], status
        assert status["format_1_secrets"] == 0, status
    finally:
        server.stop()

    # The old key is gone from the file: a restart with only the new key serves everything.
    server.start()
    try:
        for client in clients:
            sdk = stripe.StripeClient(key, base_addresses={"api": server.url}, max_network_retries=0)
            for name, expected in client.held.items():
                found = sdk.v1.apps.secrets.find(
                    params={"name": name, "scope": ACCOUNT, "expand": ["payload"]},
                    options={"stripe_account": CUSTOMER},
                )
                assert found.payload == expected
    finally:
        server.stop()

