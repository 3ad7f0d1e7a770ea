"""Durability and secrecy on disk: restarts, SIGKILL, and no plaintext in any file.

Every test here starts its own servers (the `new_server` fixture) on its own data
directory, so it can stop and start them.
"""

import json
import re
import secrets
import signal
import time
from pathlib import Path

import stripe

from harness import PAYLOAD_MARKER, Server, app_key, fresh_account, payload, unique

ACCOUNT = {"type": "account"}


def client_for(srv, key="sk_test_persist"):
    return stripe.StripeClient(key, base_addresses={"api": srv.url}, max_network_retries=0)


def files_containing(root: Path, needle: bytes):
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass
    return hits


def fill(srv):
    """Sets a mix of secrets; returns what a later find must see."""
    expected = []
    accounts = [None, fresh_account()]
    keys = [app_key("test", "persistA"), app_key("live", "persistA"), app_key("test", "persistB")]
    scopes = [ACCOUNT, {"type": "user", "user": "usr_persist"}]
    expires = int(time.time()) + 86400
    for key in keys:
        c = client_for(srv, key)
        for acct in accounts:
            opts = {"stripe_account": acct} if acct else {}
            for scope in scopes:
                for i in range(2):
                    params = {"name": unique(f"p{i}"), "payload": payload(), "scope": scope}
                    if i == 1:
                        params["expires_at"] = expires
                    s = c.v1.apps.secrets.create(params=params, options=opts)
                    expected.append((key, opts, params, s.last_response.data))
    return expected


def check_all(srv, expected):
    for key, opts, params, body in expected:
        found = client_for(srv, key).v1.apps.secrets.find(
            params={"name": params["name"], "scope": params["scope"], "expand": ["payload"]}, options=opts
        )
        assert found.last_response.data == {**body, "payload": params["payload"]}


def test_restart_keeps_every_secret(new_server, tmp_path):
    data = tmp_path / "data"
    first = new_server(data)
    expected = fill(first)
    c = client_for(first)
    # A deleted secret stays deleted, and a replaced one keeps its new payload.
    gone = unique("gone")
    c.v1.apps.secrets.create(params={"name": gone, "payload": payload(), "scope": ACCOUNT})
    c.v1.apps.secrets.delete_where(params={"name": gone, "scope": ACCOUNT})
    kept = unique("kept")
    original = c.v1.apps.secrets.create(params={"name": kept, "payload": payload("old"), "scope": ACCOUNT})
    newer = payload("new")
    c.v1.apps.secrets.create(params={"name": kept, "payload": newer, "scope": ACCOUNT})
    order = [s.id for s in c.v1.apps.secrets.list(params={"scope": ACCOUNT, "limit": 100}).data]

    assert first.stop(signal.SIGTERM) == 0, first.log_tail()

    second = new_server(data)
    check_all(second, expected)
    c2 = client_for(second)
    found = c2.v1.apps.secrets.find(params={"name": kept, "scope": ACCOUNT, "expand": ["payload"]})
    assert (found.id, found.created, found.payload) == (original.id, original.created, newer)
    try:
        c2.v1.apps.secrets.find(params={"name": gone, "scope": ACCOUNT})
        raise AssertionError("deleted secret came back after restart")
    except stripe.InvalidRequestError as e:
        assert e.http_status == 404 and e.code == "resource_missing"
    assert [s.id for s in c2.v1.apps.secrets.list(params={"scope": ACCOUNT, "limit": 100}).data] == order
    assert second.stop(signal.SIGTERM) == 0, second.log_tail()


def test_acknowledged_writes_survive_sigkill(new_server, tmp_path):
    data = tmp_path / "data"
    first = new_server(data)
    c = client_for(first)
    name, value = unique(), payload()
    c.v1.apps.secrets.create(params={"name": name, "payload": value, "scope": ACCOUNT})
    dropped = unique("dropped")
    c.v1.apps.secrets.create(params={"name": dropped, "payload": payload(), "scope": ACCOUNT})
    c.v1.apps.secrets.delete_where(params={"name": dropped, "scope": ACCOUNT})
    first.stop(signal.SIGKILL)

    second = new_server(data)
    c2 = client_for(second)
    assert c2.v1.apps.secrets.find(params={"name": name, "scope": ACCOUNT, "expand": ["payload"]}).payload == value
    try:
        c2.v1.apps.secrets.find(params={"name": dropped, "scope": ACCOUNT})
        raise AssertionError("deleted secret came back after SIGKILL")
    except stripe.InvalidRequestError as e:
        assert e.http_status == 404


def test_no_plaintext_payload_on_disk_or_in_logs(new_server, tmp_path):
    data = tmp_path / "data"
    srv = new_server(data)
    fill(srv)
    c = client_for(srv)
    # An idempotent answer that holds a payload is kept too; it must be sealed as well.
    c.v1.apps.secrets.create(
        params={"name": unique("idem"), "payload": payload("idem"), "scope": ACCOUNT, "expand": ["payload"]},
        options={"idempotency_key": unique("key")},
    )
    # Error paths see payloads too.
    try:
        c.v1.apps.secrets.create(params={"name": unique(), "payload": payload("err"), "scope": ACCOUNT, "bogus": "1"})
    except stripe.InvalidRequestError:
        pass
    needle = PAYLOAD_MARKER.encode()
    assert files_containing(data, needle) == [], "plaintext payload in the data directory while running"
    assert srv.stop(signal.SIGTERM) == 0
    assert files_containing(data, needle) == [], "plaintext payload in the data directory after shutdown"
    assert needle.decode() not in srv.log_text(), "plaintext payload in the server's output"


def test_environment_twins_configure_the_server(new_server, tmp_path):
    data = tmp_path / "envdata"
    srv = new_server(
        data,
        use_flags=False,
        env={
            "SECRETSTORE_DEV": "true",
            "SECRETSTORE_LISTEN": "127.0.0.1:0",
            "SECRETSTORE_DATA": str(data),
            "SECRETSTORE_MAX_SECRETS_PER_SCOPE": "2",
        },
    )
    c = client_for(srv)
    for _ in range(2):
        c.v1.apps.secrets.create(params={"name": unique(), "payload": payload(), "scope": ACCOUNT})
    try:
        c.v1.apps.secrets.create(params={"name": unique(), "payload": payload(), "scope": ACCOUNT})
        raise AssertionError("SECRETSTORE_MAX_SECRETS_PER_SCOPE=2 was not applied")
    except stripe.InvalidRequestError as e:
        assert e.http_status == 400
    assert srv.stop(signal.SIGTERM) == 0
    assert any(data.iterdir()), "SECRETSTORE_DATA directory was not used"


def write_root_key(path: Path, mode: int = 0o600) -> Path:
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(mode)
    return path


def test_root_key_file_opens_the_data_after_restart(new_server, tmp_path):
    data = tmp_path / "data"
    key_file = write_root_key(tmp_path / "root.key")
    first = new_server(data, extra_args=["--root-key-file", str(key_file)])
    c = client_for(first)
    name, value = unique(), payload()
    c.v1.apps.secrets.create(params={"name": name, "payload": value, "scope": ACCOUNT})
    assert first.stop() == 0
    second = new_server(data, extra_args=["--root-key-file", str(key_file)])
    found = client_for(second).v1.apps.secrets.find(params={"name": name, "scope": ACCOUNT, "expand": ["payload"]})
    assert found.payload == value
    assert second.stop() == 0
    assert files_containing(tmp_path / "data", key_file.read_text().strip().encode()) == [], "root key copied into the data"


def test_root_key_env_twin(new_server, tmp_path):
    data = tmp_path / "data"
    key = secrets.token_hex(32)
    first = new_server(data, env={"SECRETSTORE_ROOT_KEY": key})
    name, value = unique(), payload()
    client_for(first).v1.apps.secrets.create(params={"name": name, "payload": value, "scope": ACCOUNT})
    assert first.stop() == 0
    assert key not in first.log_text()
    second = new_server(data, env={"SECRETSTORE_ROOT_KEY": key})
    assert client_for(second).v1.apps.secrets.find(
        params={"name": name, "scope": ACCOUNT, "expand": ["payload"]}
    ).payload == value


def test_a_different_root_key_never_yields_the_data(new_server, tmp_path):
    data = tmp_path / "data"
    right = write_root_key(tmp_path / "right.key")
    wrong = write_root_key(tmp_path / "wrong.key")
    first = new_server(data, extra_args=["--root-key-file", str(right)])
    name, value = unique(), payload()
    client_for(first).v1.apps.secrets.create(params={"name": name, "payload": value, "scope": ACCOUNT})
    assert first.stop() == 0
    # Either the server refuses to start with the wrong key, or it starts and cannot open the payload.
    probe = Server(data, tmp_path / "wrong.log", extra_args=["--root-key-file", str(wrong)])
    try:
        out = probe.start_expecting_refusal()
        assert value not in out
    except AssertionError as refused_to_refuse:
        if "did not refuse" not in str(refused_to_refuse):
            raise
        srv = new_server(data, extra_args=["--root-key-file", str(wrong)])
        try:
            found = client_for(srv).v1.apps.secrets.find(
                params={"name": name, "scope": ACCOUNT, "expand": ["payload"]}
            )
            assert found.payload != value, "a wrong root key opened the payload"
        except stripe.StripeError as e:
            assert value not in (e.http_body or "")


def test_root_key_file_readable_by_others_is_refused(tmp_path):
    key_file = write_root_key(tmp_path / "root.key", mode=0o644)
    out = Server(tmp_path / "data", tmp_path / "server.log", extra_args=["--root-key-file", str(key_file)]).start_expecting_refusal()
    assert key_file.read_text().strip() not in out, "the refusal printed the key"


def test_idempotent_answers_survive_a_restart(new_server, tmp_path):
    data = tmp_path / "data"
    first = new_server(data)
    params = {"name": unique(), "payload": payload(), "scope": ACCOUNT, "expand": ["payload"]}
    opts = {"idempotency_key": unique("idem")}
    answer = client_for(first).v1.apps.secrets.create(params=params, options=opts)
    assert first.stop() == 0
    second = new_server(data)
    again = client_for(second).v1.apps.secrets.create(params=params, options=opts)
    assert again.last_response.data == answer.last_response.data
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"


def test_json_logs(new_server, tmp_path):
    srv = new_server(tmp_path / "data", extra_args=["--log-format", "json"])
    client_for(srv).v1.apps.secrets.list(params={"scope": ACCOUNT})
    assert srv.stop() == 0
    lines = [
        line for line in srv.log_text().splitlines()
        if line.strip() and not line.startswith("[stdout]") and not line.startswith("=== start")
    ]
    assert lines, "no log lines on stderr"
    objects = []
    for line in lines:
        if line.startswith("{"):
            objects.append(json.loads(line))
    assert objects, "no JSON log lines"
    # Every line that looks like a log event is JSON.
    assert all(line.startswith("{") or not re.match(r"^\d{4}-\d\d-\d\dT", line) for line in lines), lines
