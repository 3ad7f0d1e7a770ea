"""stripe-python's StripeClient style: `client.v1.apps.secrets.*` with per-request options."""

import time

import pytest
import stripe

from harness import (
    SECRET_KEYS,
    app_key,
    assert_secret_shape,
    expect_error,
    fresh_account,
    payload,
    unique,
)

ACCOUNT = {"type": "account"}


@pytest.fixture(scope="module")
def client(server):
    return stripe.StripeClient("sk_test_pyclient", base_addresses={"api": server.url}, max_network_retries=0)


def live_client(server, app=None):
    return stripe.StripeClient(app_key("live", app), base_addresses={"api": server.url}, max_network_retries=0)


def test_create_find_delete(client):
    secrets = client.v1.apps.secrets
    acct, name, value = fresh_account(), unique(), payload()
    opts = {"stripe_account": acct}

    created = secrets.create(params={"name": name, "payload": value, "scope": ACCOUNT}, options=opts)
    assert isinstance(created, stripe.apps.Secret)
    body = created.last_response.data
    assert_secret_shape(body, name=name, scope={"type": "account"}, livemode=False)
    assert body["expires_at"] is None

    found = secrets.find(params={"name": name, "scope": ACCOUNT}, options=opts)
    assert found.last_response.data == body

    full = secrets.find(params={"name": name, "scope": ACCOUNT, "expand": ["payload"]}, options=opts)
    assert full.payload == value and full.id == created.id

    deleted = secrets.delete_where(params={"name": name, "scope": ACCOUNT}, options=opts)
    assert set(deleted.last_response.data) == SECRET_KEYS | {"deleted"}
    assert deleted.deleted is True and deleted.id == created.id

    expect_error(
        stripe.InvalidRequestError,
        lambda: secrets.find(params={"name": name, "scope": ACCOUNT}, options=opts),
        status=404,
        code="resource_missing",
        param="name",
        message=f"No such secret: '{name}'",
    )


def test_live_client_is_livemode_and_separate(server, client):
    app = "clientapp" + unique("")[1:13]
    test_c = stripe.StripeClient(f"sk_test_{app}", base_addresses={"api": server.url}, max_network_retries=0)
    live_c = live_client(server, app)
    name = unique()
    live = live_c.v1.apps.secrets.create(params={"name": name, "payload": payload(), "scope": ACCOUNT})
    assert live.livemode is True
    expect_error(
        stripe.InvalidRequestError,
        lambda: test_c.v1.apps.secrets.find(params={"name": name, "scope": ACCOUNT}),
        status=404,
        code="resource_missing",
    )


def test_user_scope(client):
    acct, name = fresh_account(), unique()
    user = {"type": "user", "user": "usr_123"}
    s = client.v1.apps.secrets.create(
        params={"name": name, "payload": payload(), "scope": user}, options={"stripe_account": acct}
    )
    assert s.last_response.data["scope"] == {"type": "user", "user": "usr_123"}
    expect_error(
        stripe.InvalidRequestError,
        lambda: client.v1.apps.secrets.find(params={"name": name, "scope": ACCOUNT}, options={"stripe_account": acct}),
        status=404,
        code="resource_missing",
    )


def test_expires_at(client):
    acct = fresh_account()
    expires = int(time.time()) + 7200
    s = client.v1.apps.secrets.create(
        params={"name": unique(), "payload": payload(), "scope": ACCOUNT, "expires_at": expires},
        options={"stripe_account": acct},
    )
    assert s.expires_at == expires
    expect_error(
        stripe.InvalidRequestError,
        lambda: client.v1.apps.secrets.create(
            params={"name": unique(), "payload": payload(), "scope": ACCOUNT, "expires_at": int(time.time()) - 1},
            options={"stripe_account": acct},
        ),
        status=400,
        param="expires_at",
    )


def test_idempotency_options(client):
    acct, name, key = fresh_account(), unique(), unique("idem")
    params = {"name": name, "payload": payload(), "scope": ACCOUNT}
    opts = {"stripe_account": acct, "idempotency_key": key}
    first = client.v1.apps.secrets.create(params=params, options=opts)
    again = client.v1.apps.secrets.create(params=params, options=opts)
    assert again.id == first.id
    assert again.last_response.data == first.last_response.data
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    expect_error(
        stripe.IdempotencyError,
        lambda: client.v1.apps.secrets.create(params={**params, "payload": payload()}, options=opts),
        status=400,
        type_="idempotency_error",
    )


def test_errors(server, client):
    expect_error(
        stripe.InvalidRequestError,
        lambda: client.v1.apps.secrets.create(params={"name": unique(), "payload": payload()}),
        status=400,
        code="parameter_missing",
        param="scope",
    )
    expect_error(
        stripe.InvalidRequestError,
        lambda: client.v1.apps.secrets.list(params={"scope": {"type": "galaxy"}}),
        status=400,
        code="parameter_invalid_enum",
        param="scope[type]",
    )
    bad = stripe.StripeClient("sk_test_", base_addresses={"api": server.url}, max_network_retries=0)
    expect_error(
        stripe.AuthenticationError,
        lambda: bad.v1.apps.secrets.list(params={"scope": ACCOUNT}),
        status=401,
    )


def test_request_api_key_option_overrides_client_key(client):
    name = unique()
    other = app_key()
    s = client.v1.apps.secrets.create(
        params={"name": name, "payload": payload(), "scope": ACCOUNT}, options={"api_key": other}
    )
    found = client.v1.apps.secrets.find(params={"name": name, "scope": ACCOUNT}, options={"api_key": other})
    assert found.id == s.id
    expect_error(
        stripe.InvalidRequestError,
        lambda: client.v1.apps.secrets.find(params={"name": name, "scope": ACCOUNT}),
        status=404,
        code="resource_missing",
    )


def test_a_replayed_delete_answers_no_payload_since_its_secret_is_gone(client):
    secrets = client.v1.apps.secrets
    acct, name, value = fresh_account(), unique(), payload()
    secrets.create(params={"name": name, "payload": value, "scope": ACCOUNT}, options={"stripe_account": acct})
    params = {"name": name, "scope": ACCOUNT, "expand": ["payload"]}
    opts = {"stripe_account": acct, "idempotency_key": unique("idem")}
    first = secrets.delete_where(params=params, options=opts)
    assert first.payload == value
    again = secrets.delete_where(params=params, options=opts)
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert again.payload is None
    assert again.deleted is True and again.id == first.id


def test_past_its_quota_a_request_runs_and_its_answer_is_not_kept(new_server):
    srv = new_server(extra_args=["--idempotency-quota-bytes", "2000"])
    secrets = stripe.StripeClient(
        "sk_test_pyquota", base_addresses={"api": srv.url}, max_network_retries=0
    ).v1.apps.secrets
    name, sent = unique(), []
    # A kept answer of a set is some 400 bytes: a few fit under 2,000.
    for _ in range(20):
        params = {"name": name, "payload": payload(), "scope": ACCOUNT}
        opts = {"idempotency_key": unique("idem")}
        made = secrets.create(params=params, options=opts)
        sent.append((params, opts, made.last_response.headers.get("Idempotent-Kept")))
        if sent[-1][2] == "false":
            break
    kept = [s for s in sent if s[2] is None]
    assert kept and sent[-1][2] == "false", sent
    # What was kept replays; what was not runs again, and succeeds.
    params, opts, _ = kept[0]
    assert secrets.create(params=params, options=opts).last_response.headers.get("Idempotent-Replayed") == "true"
    params, opts, _ = sent[-1]
    again = secrets.create(params=params, options=opts)
    assert again.last_response.headers.get("Idempotent-Replayed") is None
    assert again.last_response.headers.get("Idempotent-Kept") == "false"
