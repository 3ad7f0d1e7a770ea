"""Production mode through stripe-python: a platform provisions over the admin API, then its
app's backend (a secret key, acting for an installing account with `stripe_account`) and a UI
extension (a user session's `ek_` key) use the Secret Store; over TLS with `stripe.ca_bundle_path`;
and a rate-limited key gets through with the SDK's own retries.
"""

import os
import secrets as _random
import stat
import subprocess
from pathlib import Path

import pytest
import requests
import stripe

from harness import Server, unique

ACCOUNT = {"type": "account"}


def code(err: stripe.StripeError):
    """The error's code, from the error object the SDK parsed (not every class sets `.code`)."""
    return err.error.code if err.error is not None else err.code


def owner_only(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


class Admin:
    """The admin API of a running server."""

    def __init__(self, url: str, token: str, verify=True):
        self.url, self.token, self.verify = url, token, verify

    def call(self, method: str, path: str, body=None):
        response = requests.request(
            method,
            self.url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=self.verify,
            timeout=30,
        )
        return response.status_code, response.json()

    def ok(self, method: str, path: str, body=None) -> dict:
        status, answer = self.call(method, path, body)
        assert status == 200, (method, path, answer)
        return answer


def start_production(tmp_path: Path, extra=()) -> "tuple[Server, Admin, str]":
    token = _random.token_urlsafe(36)
    token_file = owner_only(tmp_path / "admin.token", token)
    root_key = owner_only(tmp_path / "root.key", _random.token_hex(32))
    args = [
        "--root-key-file", str(root_key), "--admin-token-file", str(token_file),
        "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
        "--data", str(tmp_path / "data"), *extra,
    ]
    server = Server(tmp_path / "data", tmp_path / "server.log", extra_args=args, use_flags=False).start()
    return server, Admin(server.admin_url, token), token


def provision(admin: Admin) -> dict:
    """A platform app installed on a customer, with a user, a key and a session."""
    admin.ok("POST", "/v1/accounts", {"id": "acct_platform", "name": "Platform"})
    admin.ok("POST", "/v1/apps", {"id": "com.example.crm", "name": "CRM", "account": "acct_platform"})
    admin.ok("POST", "/v1/accounts", {"id": "acct_customer"})
    admin.ok("POST", "/v1/installations", {"app": "com.example.crm", "account": "acct_customer"})
    admin.ok("POST", "/v1/accounts/acct_customer/users", {"id": "usr_alice"})
    key = admin.ok("POST", "/v1/apps/com.example.crm/keys", {"mode": "test", "type": "secret"})
    session = admin.ok(
        "POST", "/v1/user_sessions",
        {"app": "com.example.crm", "account": "acct_customer", "user": "usr_alice", "mode": "test"},
    )
    assert key["secret"].startswith("sk_test_") and len(key["secret"]) >= 48
    assert session["secret"].startswith("ek_test_")
    return {"key": key, "session": session}


@pytest.fixture
def production(tmp_path):
    server, admin, token = start_production(tmp_path)
    saved = (stripe.api_base, stripe.api_key, stripe.max_network_retries, stripe.ca_bundle_path)
    stripe.api_base = server.url
    stripe.max_network_retries = 0
    yield server, admin
    stripe.api_base, stripe.api_key, stripe.max_network_retries, stripe.ca_bundle_path = saved
    server.stop()


def test_the_app_backend_and_a_user_session(production):
    server, admin = production
    made = provision(admin)
    app_key, session_key = made["key"]["secret"], made["session"]["secret"]
    name = unique("crm-token")
    # The backend, for the installing account.
    created = stripe.apps.Secret.create(
        name=name, payload="tok_crm", scope=ACCOUNT, api_key=app_key, stripe_account="acct_customer"
    )
    assert created.livemode is False
    user_secret = stripe.apps.Secret.create(
        name=name, payload="alice-only", scope={"type": "user", "user": "usr_alice"},
        api_key=app_key, stripe_account="acct_customer",
    )
    # The UI extension, as usr_alice: the account scope and her own scope.
    found = stripe.apps.Secret.find(name=name, scope=ACCOUNT, expand=["payload"], api_key=session_key)
    assert (found.id, found.payload) == (created.id, "tok_crm")
    mine = stripe.apps.Secret.find(
        name=name, scope={"type": "user", "user": "usr_alice"}, expand=["payload"], api_key=session_key
    )
    assert (mine.id, mine.payload) == (user_secret.id, "alice-only")
    with pytest.raises(stripe.PermissionError) as refused:
        stripe.apps.Secret.find(name=name, scope={"type": "user", "user": "usr_bob"}, api_key=session_key)
    assert code(refused.value) == "scope_access_denied"
    with pytest.raises(stripe.PermissionError) as other:
        stripe.apps.Secret.find(name=name, scope=ACCOUNT, api_key=session_key, stripe_account="acct_platform")
    assert code(other.value) == "account_access_denied"
    # Without Stripe-Account the backend acts on the app's owner, where nothing is stored.
    with pytest.raises(stripe.InvalidRequestError) as absent:
        stripe.apps.Secret.find(name=name, scope=ACCOUNT, api_key=app_key)
    assert absent.value.http_status == 404
    # Revoked: refused on the next request.
    admin.ok("POST", f"/v1/keys/{made['key']['id']}/revoke", {})
    with pytest.raises(stripe.AuthenticationError):
        stripe.apps.Secret.find(name=name, scope=ACCOUNT, api_key=app_key, stripe_account="acct_customer")
    # Ended: the session too.
    admin.ok("DELETE", f"/v1/user_sessions/{made['session']['id']}")
    with pytest.raises(stripe.AuthenticationError):
        stripe.apps.Secret.find(name=name, scope=ACCOUNT, api_key=session_key)


def test_a_rate_limited_key_gets_through_with_the_sdks_retries(tmp_path):
    server, admin, _ = start_production(tmp_path, extra=["--rate-limit", "5"])
    try:
        key = provision(admin)["key"]["secret"]
        client = stripe.StripeClient(key, base_addresses={"api": server.url}, max_network_retries=6)
        statuses = []
        for n in range(25):
            secret = client.v1.apps.secrets.create(
                params={"name": f"n{n % 5}", "payload": "p", "scope": ACCOUNT},
                options={"stripe_account": "acct_customer"},
            )
            statuses.append(secret.object)
        assert statuses == ["apps.secret"] * 25
        # Without retries the limit shows: 429 rate_limit.
        bare = stripe.StripeClient(key, base_addresses={"api": server.url}, max_network_retries=0)
        with pytest.raises(stripe.RateLimitError) as limited:
            for _ in range(40):
                bare.v1.apps.secrets.list(params={"scope": ACCOUNT}, options={"stripe_account": "acct_customer"})
        assert code(limited.value) == "rate_limit"
    finally:
        server.stop()


def make_tls(dir: Path) -> "tuple[Path, Path, Path]":
    """A private CA and a certificate for 127.0.0.1 it signed: (ca, cert, key)."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ca, ca_key = dir / "ca.pem", dir / "ca.key"
    cert, key, csr, ext = dir / "cert.pem", dir / "cert.key", dir / "cert.csr", dir / "cert.ext"
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=test CA", "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(csr))
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
        "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


def test_over_tls_with_the_sdks_ca_bundle(tmp_path):
    ca, cert, key = make_tls(tmp_path)
    server, admin, _ = start_production(
        tmp_path,
        extra=["--tls-cert", str(cert), "--tls-key", str(key), "--admin-tls-cert", str(cert), "--admin-tls-key", str(key)],
    )
    saved = (stripe.api_base, stripe.ca_bundle_path, stripe.max_network_retries)
    try:
        assert server.url.startswith("https://") and server.admin_url.startswith("https://")
        admin.verify = str(ca)
        made = provision(admin)
        stripe.api_base = server.url
        stripe.ca_bundle_path = str(ca)
        stripe.max_network_retries = 0
        name = unique("tls")
        stripe.apps.Secret.create(name=name, payload="over-tls", scope=ACCOUNT,
                                  api_key=made["key"]["secret"], stripe_account="acct_customer")
        found = stripe.apps.Secret.find(name=name, scope=ACCOUNT, expand=["payload"],
                                        api_key=made["session"]["secret"])
        assert found.payload == "over-tls"
        # Without the CA, the SDK refuses the certificate.
        stripe.ca_bundle_path = None
        with pytest.raises(stripe.APIConnectionError):
            stripe.apps.Secret.find(name=name, scope=ACCOUNT, api_key=made["session"]["secret"])
    finally:
        stripe.api_base, stripe.ca_bundle_path, stripe.max_network_retries = saved
        server.stop()
