"""stripe-python (global configuration style) against a real `secretstore serve --dev`.

Each test works in namespaces nobody else uses (a fresh `acct_` or a fresh app key),
so that tests stay independent although they share one server with the default
scope maximum of 10.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import stripe

from harness import (
    ANY,
    PAYLOAD_MARKER,
    REQUEST_ID_RE,
    SECRET_KEYS,
    app_key,
    assert_secret_shape,
    expect_error,
    fresh_account,
    payload,
    unique,
)

ACCOUNT = {"type": "account"}
Secret = stripe.apps.Secret
YEAR = 365 * 24 * 3600


def raw(obj):
    """The JSON object exactly as the server sent it."""
    return obj.last_response.data


# 1. create ---------------------------------------------------------------------------


def test_create_answers_exactly_the_contract_fields(server):
    name = unique()
    t0 = int(time.time())
    s = Secret.create(name=name, payload=payload(), scope=ACCOUNT, stripe_account=fresh_account())
    t1 = int(time.time())
    body = raw(s)
    assert_secret_shape(body, name=name, scope={"type": "account"}, livemode=False)
    assert body["expires_at"] is None
    assert t0 - 2 <= body["created"] <= t1 + 2
    assert "payload" not in body
    # The SDK turned it into its own resource type.
    assert isinstance(s, Secret)
    assert s.object == "apps.secret" and s.name == name and s.scope.type == "account"
    assert s.last_response.code == 200
    assert REQUEST_ID_RE.match(s.last_response.request_id)


def test_ids_are_unique(server):
    acct = fresh_account()
    ids = {Secret.create(name=unique(), payload=payload(), scope=ACCOUNT, stripe_account=acct).id for _ in range(5)}
    assert len(ids) == 5


def test_create_with_live_key_is_livemode(server):
    name = unique()
    s = Secret.create(name=name, payload=payload(), scope=ACCOUNT, api_key=app_key("live"))
    assert_secret_shape(raw(s), name=name, scope={"type": "account"}, livemode=True)


@pytest.mark.parametrize("mode,livemode", [("test", False), ("live", True)])
def test_restricted_keys_share_the_app_of_the_same_name(server, mode, livemode):
    app = "rkapp" + unique("")[1:13]
    name = unique()
    value = payload()
    created = Secret.create(name=name, payload=value, scope=ACCOUNT, api_key=f"rk_{mode}_{app}")
    assert raw(created)["livemode"] is livemode
    found = Secret.find(name=name, scope=ACCOUNT, expand=["payload"], api_key=f"sk_{mode}_{app}")
    assert found.id == created.id
    assert found.payload == value


def test_create_with_expand_payload_returns_payload(server):
    name, value = unique(), payload()
    s = Secret.create(name=name, payload=value, scope=ACCOUNT, expand=["payload"], stripe_account=fresh_account())
    body = raw(s)
    assert_secret_shape(body, name=name, scope={"type": "account"}, livemode=False, with_payload=True)
    assert body["payload"] == value


def test_create_in_user_scope(server):
    name = unique()
    s = Secret.create(name=name, payload=payload(), scope={"type": "user", "user": "usr_123"}, stripe_account=fresh_account())
    assert_secret_shape(raw(s), name=name, scope={"type": "user", "user": "usr_123"}, livemode=False)


def test_unicode_payload_and_name_round_trip_at_the_length_limit(server):
    acct = fresh_account()
    name = "名" * 4990 + unique("")[1:11]
    value = PAYLOAD_MARKER + "😀" * (5000 - len(PAYLOAD_MARKER))
    assert len(name) == 5000 and len(value) == 5000
    Secret.create(name=name, payload=value, scope=ACCOUNT, stripe_account=acct)
    found = Secret.find(name=name, scope=ACCOUNT, expand=["payload"], stripe_account=acct)
    assert found.name == name
    assert found.payload == value


def test_too_long_name_and_payload_are_refused(server):
    acct = fresh_account()
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name="n" * 5001, payload=payload(), scope=ACCOUNT, stripe_account=acct),
        status=400,
        code="parameter_invalid_string_too_long",
        param="name",
    )
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name=unique(), payload="😀" * 5001, scope=ACCOUNT, stripe_account=acct),
        status=400,
        code="parameter_invalid_string_too_long",
        param="payload",
    )


# 2. find -----------------------------------------------------------------------------


def test_find_without_and_with_expand(server):
    acct, name, value = fresh_account(), unique(), payload()
    created = Secret.create(name=name, payload=value, scope=ACCOUNT, stripe_account=acct)

    plain = Secret.find(name=name, scope=ACCOUNT, stripe_account=acct)
    assert raw(plain) == raw(created)
    assert "payload" not in raw(plain)

    full = Secret.find(name=name, scope=ACCOUNT, expand=["payload"], stripe_account=acct)
    body = raw(full)
    assert_secret_shape(body, name=name, scope={"type": "account"}, livemode=False, with_payload=True)
    assert body["payload"] == value
    assert body["id"] == created.id and body["created"] == created.created


def test_find_missing_is_resource_missing(server):
    name = unique("missing")
    err = expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.find(name=name, scope=ACCOUNT, stripe_account=fresh_account()),
        status=404,
        code="resource_missing",
        param="name",
        message=f"No such secret: '{name}'",
    )
    assert err["type"] == "invalid_request_error"


def test_find_sdk_error_attributes(server):
    name = unique("missing")
    with pytest.raises(stripe.InvalidRequestError) as info:
        Secret.find(name=name, scope=ACCOUNT)
    e = info.value
    assert e.http_status == 404
    assert e.code == "resource_missing"
    assert e.param == "name"
    assert e.user_message == f"No such secret: '{name}'"
    assert e.error.type == "invalid_request_error"
    assert REQUEST_ID_RE.match(e.request_id)


# 4. delete ---------------------------------------------------------------------------


def test_delete_where_answers_the_object_with_deleted_true(server):
    acct, name = fresh_account(), unique()
    created = Secret.create(name=name, payload=payload(), scope=ACCOUNT, stripe_account=acct)
    deleted = Secret.delete_where(name=name, scope=ACCOUNT, stripe_account=acct)
    body = raw(deleted)
    assert set(body) == SECRET_KEYS | {"deleted"}, body
    assert body["deleted"] is True
    for key in SECRET_KEYS:
        assert body[key] == raw(created)[key], key
    assert deleted.deleted is True

    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.find(name=name, scope=ACCOUNT, stripe_account=acct),
        status=404,
        code="resource_missing",
        param="name",
        message=f"No such secret: '{name}'",
    )
    # A second delete finds nothing either.
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.delete_where(name=name, scope=ACCOUNT, stripe_account=acct),
        status=404,
        code="resource_missing",
        param="name",
        message=f"No such secret: '{name}'",
    )


def test_delete_with_expand_returns_payload(server):
    acct, name, value = fresh_account(), unique(), payload()
    Secret.create(name=name, payload=value, scope=ACCOUNT, stripe_account=acct)
    deleted = Secret.delete_where(name=name, scope=ACCOUNT, expand=["payload"], stripe_account=acct)
    body = raw(deleted)
    assert set(body) == SECRET_KEYS | {"deleted", "payload"}
    assert body["payload"] == value and body["deleted"] is True


def test_name_can_be_reused_after_delete(server):
    acct, name = fresh_account(), unique()
    first = Secret.create(name=name, payload=payload(), scope=ACCOUNT, stripe_account=acct)
    Secret.delete_where(name=name, scope=ACCOUNT, stripe_account=acct)
    value = payload()
    second = Secret.create(name=name, payload=value, scope=ACCOUNT, stripe_account=acct)
    assert second.id != first.id
    assert Secret.find(name=name, scope=ACCOUNT, expand=["payload"], stripe_account=acct).payload == value


# 5. isolation ------------------------------------------------------------------------


def test_user_scope_is_separate_from_account_scope(server):
    acct, name = fresh_account(), unique()
    user = {"type": "user", "user": "usr_123"}
    other_user = {"type": "user", "user": "usr_456"}
    a = Secret.create(name=name, payload="account-" + payload(), scope=ACCOUNT, stripe_account=acct)
    u = Secret.create(name=name, payload="user-" + payload(), scope=user, stripe_account=acct)
    assert a.id != u.id
    assert Secret.find(name=name, scope=ACCOUNT, expand=["payload"], stripe_account=acct).payload.startswith("account-")
    found_u = Secret.find(name=name, scope=user, expand=["payload"], stripe_account=acct)
    assert found_u.payload.startswith("user-")
    assert raw(found_u)["scope"] == {"type": "user", "user": "usr_123"}
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.find(name=name, scope=other_user, stripe_account=acct),
        status=404,
        code="resource_missing",
    )
    # Lists are per scope.
    assert [s.id for s in Secret.list(scope=ACCOUNT, stripe_account=acct).data] == [a.id]
    assert [s.id for s in Secret.list(scope=user, stripe_account=acct).data] == [u.id]
    assert Secret.list(scope=other_user, stripe_account=acct).data == []
    # Deleting one leaves the other.
    Secret.delete_where(name=name, scope=user, stripe_account=acct)
    assert Secret.find(name=name, scope=ACCOUNT, stripe_account=acct).id == a.id


def test_stripe_account_is_a_separate_namespace(server):
    key = app_key("test")
    name = unique()
    mine = Secret.create(name=name, payload="own-" + payload(), scope=ACCOUNT, api_key=key)
    theirs = Secret.create(name=name, payload="acct1-" + payload(), scope=ACCOUNT, api_key=key, stripe_account="acct_1")
    assert mine.id != theirs.id
    assert Secret.find(name=name, scope=ACCOUNT, expand=["payload"], api_key=key).payload.startswith("own-")
    found = Secret.find(name=name, scope=ACCOUNT, expand=["payload"], api_key=key, stripe_account="acct_1")
    assert found.payload.startswith("acct1-") and found.id == theirs.id
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.find(name=name, scope=ACCOUNT, api_key=key, stripe_account="acct_2"),
        status=404,
        code="resource_missing",
    )
    assert [s.id for s in Secret.list(scope=ACCOUNT, api_key=key).data] == [mine.id]
    assert [s.id for s in Secret.list(scope=ACCOUNT, api_key=key, stripe_account="acct_1").data] == [theirs.id]


def test_test_and_live_modes_are_separate(server):
    app, name = "modeapp" + unique("")[1:13], unique()
    test_key, live_key = f"sk_test_{app}", f"sk_live_{app}"
    t = Secret.create(name=name, payload="test-" + payload(), scope=ACCOUNT, api_key=test_key)
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.find(name=name, scope=ACCOUNT, api_key=live_key),
        status=404,
        code="resource_missing",
    )
    assert Secret.list(scope=ACCOUNT, api_key=live_key).data == []
    live = Secret.create(name=name, payload="live-" + payload(), scope=ACCOUNT, api_key=live_key)
    assert live.id != t.id and live.livemode is True and t.livemode is False
    assert Secret.find(name=name, scope=ACCOUNT, expand=["payload"], api_key=test_key).payload.startswith("test-")
    assert Secret.find(name=name, scope=ACCOUNT, expand=["payload"], api_key=live_key).payload.startswith("live-")


def test_two_apps_never_see_each_other(server):
    key_a, key_b = app_key("test"), app_key("test")
    name = unique()
    a = Secret.create(name=name, payload="a-" + payload(), scope=ACCOUNT, api_key=key_a, stripe_account="acct_shared")
    for acct in ("acct_shared", None):
        kwargs = {"stripe_account": acct} if acct else {}
        expect_error(
            stripe.InvalidRequestError,
            lambda: Secret.find(name=name, scope=ACCOUNT, api_key=key_b, **kwargs),
            status=404,
            code="resource_missing",
        )
        assert Secret.list(scope=ACCOUNT, api_key=key_b, **kwargs).data == []
        expect_error(
            stripe.InvalidRequestError,
            lambda: Secret.delete_where(name=name, scope=ACCOUNT, api_key=key_b, **kwargs),
            status=404,
            code="resource_missing",
        )
    b = Secret.create(name=name, payload="b-" + payload(), scope=ACCOUNT, api_key=key_b, stripe_account="acct_shared")
    assert b.id != a.id
    assert Secret.find(name=name, scope=ACCOUNT, expand=["payload"], api_key=key_a, stripe_account="acct_shared").payload.startswith("a-")


# 6. replace --------------------------------------------------------------------------


def test_set_on_existing_name_replaces_payload_keeps_id_and_created(server):
    acct, name = fresh_account(), unique()
    first = Secret.create(name=name, payload=payload("v1"), scope=ACCOUNT, stripe_account=acct)
    new_value = payload("v2")
    second = Secret.create(name=name, payload=new_value, scope=ACCOUNT, expand=["payload"], stripe_account=acct)
    assert second.id == first.id
    assert second.created == first.created
    assert second.payload == new_value
    found = Secret.find(name=name, scope=ACCOUNT, expand=["payload"], stripe_account=acct)
    assert (found.id, found.created, found.payload) == (first.id, first.created, new_value)
    assert len(Secret.list(scope=ACCOUNT, stripe_account=acct).data) == 1


def test_replace_without_expires_at_clears_expiry(server):
    acct, name = fresh_account(), unique()
    expires = int(time.time()) + 3600
    first = Secret.create(name=name, payload=payload(), scope=ACCOUNT, expires_at=expires, stripe_account=acct)
    assert first.expires_at == expires
    second = Secret.create(name=name, payload=payload(), scope=ACCOUNT, stripe_account=acct)
    assert raw(second)["expires_at"] is None
    assert raw(Secret.find(name=name, scope=ACCOUNT, stripe_account=acct))["expires_at"] is None


# 7. expires_at -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "label,offset",
    [("past", -3600), ("now", 0), ("past_far", -10 * YEAR), ("over_100_years", 101 * YEAR)],
)
def test_expires_at_out_of_range_is_refused(server, label, offset):
    acct, name = fresh_account(), unique(label)
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(
            name=name, payload=payload(), scope=ACCOUNT, expires_at=int(time.time()) + offset, stripe_account=acct
        ),
        status=400,
        code="parameter_out_of_range",
        param="expires_at",
    )
    # Nothing was stored.
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.find(name=name, scope=ACCOUNT, stripe_account=acct),
        status=404,
        code="resource_missing",
    )


def test_expires_at_not_an_integer(server):
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name=unique(), payload=payload(), scope=ACCOUNT, expires_at="tomorrow"),
        status=400,
        code="parameter_invalid_integer",
        param="expires_at",
    )


@pytest.mark.parametrize("offset", [3600, 99 * YEAR])
def test_future_expires_at_is_kept(server, offset):
    acct, name = fresh_account(), unique()
    expires = int(time.time()) + offset
    s = Secret.create(name=name, payload=payload(), scope=ACCOUNT, expires_at=expires, stripe_account=acct)
    assert raw(s)["expires_at"] == expires
    assert raw(Secret.find(name=name, scope=ACCOUNT, stripe_account=acct))["expires_at"] == expires
    assert [x.expires_at for x in Secret.list(scope=ACCOUNT, stripe_account=acct).data] == [expires]


# 8. errors ---------------------------------------------------------------------------


def test_missing_scope_is_parameter_missing(server):
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name=unique(), payload=payload()),
        status=400,
        code="parameter_missing",
        param="scope",
        message="Missing required param: scope.",
    )
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.find(name=unique()),
        status=400,
        code="parameter_missing",
        param="scope",
    )
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.list(),
        status=400,
        code="parameter_missing",
        param="scope",
    )


@pytest.mark.parametrize("missing", ["name", "payload"])
def test_missing_name_or_payload_is_parameter_missing(server, missing):
    params = {"name": unique(), "payload": payload(), "scope": ACCOUNT}
    del params[missing]
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(**params),
        status=400,
        code="parameter_missing",
        param=missing,
        message=f"Missing required param: {missing}.",
    )


def test_missing_name_on_find_and_delete(server):
    for call in (Secret.find, Secret.delete_where):
        expect_error(
            stripe.InvalidRequestError,
            lambda: call(scope=ACCOUNT),
            status=400,
            code="parameter_missing",
            param="name",
            message="Missing required param: name.",
        )


def test_bad_scope_type_is_invalid(server):
    body = expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name=unique(), payload=payload(), scope={"type": "team"}),
        status=400,
        code="parameter_invalid_enum",
        param="scope[type]",
    )
    assert "team" in body["message"] or "account" in body["message"], body


def test_user_scope_needs_a_user(server):
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name=unique(), payload=payload(), scope={"type": "user"}),
        status=400,
        code="parameter_missing",
        param="scope[user]",
    )


def test_account_scope_refuses_a_user(server):
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name=unique(), payload=payload(), scope={"type": "account", "user": "usr_1"}),
        status=400,
        code="parameter_unknown",
        param="scope[user]",
    )


@pytest.mark.parametrize("field", ["name", "payload"])
def test_empty_strings_are_refused(server, field):
    params = {"name": unique(), "payload": payload(), "scope": ACCOUNT}
    params[field] = ""
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(**params),
        status=400,
        code="parameter_invalid_string_empty",
        param=field,
    )


def test_unknown_parameter_is_refused(server):
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name=unique(), payload=payload(), scope=ACCOUNT, colour="blue"),
        status=400,
        code="parameter_unknown",
        param="colour",
        message="Received unknown parameter: colour",
    )


@pytest.mark.parametrize("key", ["sk_test_", "bogus", "pk_test_abc", "sk_prod_abc", "bogus_keymaterial_abcdefgh"])
def test_malformed_key_is_authentication_error(server, key):
    body = expect_error(
        stripe.AuthenticationError,
        lambda: Secret.list(scope=ACCOUNT, api_key=key),
        status=401,
    )
    # The key is shown at most as its prefix and last four characters.
    assert "keymaterial" not in body["message"], body


def test_same_idempotency_key_same_params_replays(server):
    acct, name, key = fresh_account(), unique(), unique("idem")
    v1 = payload("v1")
    first = Secret.create(
        name=name, payload=v1, scope=ACCOUNT, expand=["payload"], idempotency_key=key, stripe_account=acct
    )
    # Change the secret behind the key's back: a replay must answer the kept
    # answer, not run the request again.
    Secret.create(name=name, payload=payload("v2"), scope=ACCOUNT, stripe_account=acct)
    again = Secret.create(
        name=name, payload=v1, scope=ACCOUNT, expand=["payload"], idempotency_key=key, stripe_account=acct
    )
    assert raw(again) == raw(first)
    assert again.id == first.id and again.payload == v1
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert Secret.find(name=name, scope=ACCOUNT, expand=["payload"], stripe_account=acct).payload != v1


def test_same_idempotency_key_other_params_is_idempotency_error(server):
    acct, name, key = fresh_account(), unique(), unique("idem")
    Secret.create(name=name, payload=payload("a"), scope=ACCOUNT, idempotency_key=key, stripe_account=acct)
    body = expect_error(
        stripe.IdempotencyError,
        lambda: Secret.create(name=name, payload=payload("b"), scope=ACCOUNT, idempotency_key=key, stripe_account=acct),
        status=400,
        type_="idempotency_error",
        code="idempotency_key_reused",
    )
    assert PAYLOAD_MARKER not in body["message"]


def test_idempotency_keys_are_per_credential(server):
    key, name = unique("idem"), unique()
    a = Secret.create(name=name, payload=payload(), scope=ACCOUNT, idempotency_key=key, api_key=app_key())
    b = Secret.create(name=name, payload=payload(), scope=ACCOUNT, idempotency_key=key, api_key=app_key())
    assert a.id != b.id
    assert b.last_response.headers.get("Idempotent-Replayed") != "true"


def test_idempotency_keys_are_per_account(server):
    # Stripe scopes keys per account: the same key and parameters for another account run there.
    key, name, value = unique("idem"), unique(), payload()
    first_acct, other_acct = fresh_account(), fresh_account()
    a = Secret.create(name=name, payload=value, scope=ACCOUNT, idempotency_key=key, stripe_account=first_acct)
    b = Secret.create(name=name, payload=value, scope=ACCOUNT, idempotency_key=key, stripe_account=other_acct)
    assert a.id != b.id
    assert b.last_response.headers.get("Idempotent-Replayed") != "true"
    assert Secret.find(name=name, scope=ACCOUNT, stripe_account=other_acct).id == b.id


def test_answers_carry_the_request_headers_the_sdk_reads(server):
    acct, key, name, value = fresh_account(), unique("idem"), unique(), payload()
    first = Secret.create(name=name, payload=value, scope=ACCOUNT, idempotency_key=key, stripe_account=acct)
    assert first.last_response.idempotency_key == key
    assert first.last_response.headers.get("Stripe-Account") == acct
    assert first.last_response.headers.get("Original-Request") is None
    again = Secret.create(name=name, payload=value, scope=ACCOUNT, idempotency_key=key, stripe_account=acct)
    assert again.last_response.idempotency_key == key
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    # A replay names the request whose answer it is.
    assert again.last_response.headers.get("Original-Request") == first.last_response.request_id
    assert again.last_response.request_id != first.last_response.request_id
    found = Secret.find(name=name, scope=ACCOUNT, stripe_account=acct)
    assert found.last_response.headers.get("Stripe-Account") == acct
    assert found.last_response.idempotency_key is None


def test_idempotent_replay_over_raw_http(server):
    acct, key = fresh_account(), unique("idem")
    form = {"name": unique(), "payload": payload(), "scope[type]": "account"}
    headers = {"Authorization": "Bearer sk_test_pysdk", "Stripe-Account": acct, "Idempotency-Key": key}
    url = server.url + "/v1/apps/secrets"
    first = requests.post(url, data=form, headers=headers, timeout=30)
    second = requests.post(url, data=form, headers=headers, timeout=30)
    assert first.status_code == 200 and second.status_code == 200
    assert second.json() == first.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.headers.get("Idempotent-Replayed") in (None, "false")
    assert first.headers["Request-Id"] != second.headers["Request-Id"]
    changed = requests.post(url, data={**form, "payload": payload()}, headers=headers, timeout=30)
    assert changed.status_code == 400
    assert changed.json()["error"]["type"] == "idempotency_error"


def test_the_sdks_api_version_is_echoed_and_a_malformed_one_refused(server):
    acct = fresh_account()
    page = Secret.list(scope=ACCOUNT, stripe_account=acct)
    # Whatever version this stripe-python pins, it is a version: accepted and echoed.
    assert page.last_response.headers.get("Stripe-Version") == stripe.api_version
    pinned = Secret.list(scope=ACCOUNT, stripe_account=acct, stripe_version="2025-03-31.basil")
    assert pinned.last_response.headers.get("Stripe-Version") == "2025-03-31.basil"
    body = expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.list(scope=ACCOUNT, stripe_account=acct, stripe_version="garbage"),
        status=400,
        code=None,
    )
    assert body["message"].startswith("Invalid Stripe API version: garbage."), body


# 9. scope maximum (server default: 10) ------------------------------------------------


def test_eleventh_name_in_a_full_scope_is_refused(server):
    acct = fresh_account()
    names = [unique(f"full{i}") for i in range(10)]
    for n in names:
        Secret.create(name=n, payload=payload(), scope=ACCOUNT, stripe_account=acct)
    extra = unique("eleventh")
    body = expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name=extra, payload=payload(), scope=ACCOUNT, stripe_account=acct),
        status=400,
        code="scope_full",
    )
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.find(name=extra, scope=ACCOUNT, stripe_account=acct),
        status=404,
        code="resource_missing",
    )

    # Replacing a name the scope already holds still works when full.
    value = payload("replaced")
    replaced = Secret.create(name=names[3], payload=value, scope=ACCOUNT, expand=["payload"], stripe_account=acct)
    assert replaced.payload == value

    # Other scopes of the same account have their own maximum.
    Secret.create(name=extra, payload=payload(), scope={"type": "user", "user": "usr_full"}, stripe_account=acct)

    # Deleting one makes room again.
    Secret.delete_where(name=names[0], scope=ACCOUNT, stripe_account=acct)
    Secret.create(name=extra, payload=payload(), scope=ACCOUNT, stripe_account=acct)
    listed = Secret.list(scope=ACCOUNT, limit=100, stripe_account=acct)
    assert len(listed.data) == 10 and listed.has_more is False


def test_user_scope_maximum_is_per_user(server):
    acct = fresh_account()
    user_a = {"type": "user", "user": "usr_a"}
    for i in range(10):
        Secret.create(name=unique(f"u{i}"), payload=payload(), scope=user_a, stripe_account=acct)
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name=unique(), payload=payload(), scope=user_a, stripe_account=acct),
        status=400,
        code="scope_full",
    )
    Secret.create(name=unique(), payload=payload(), scope={"type": "user", "user": "usr_b"}, stripe_account=acct)


def test_concurrent_new_names_never_overfill_a_scope(server):
    acct = fresh_account()
    for i in range(9):
        Secret.create(name=unique(f"pre{i}"), payload=payload(), scope=ACCOUNT, stripe_account=acct)
    outcomes = []

    def attempt(i):
        try:
            Secret.create(name=unique(f"race{i}"), payload=payload(), scope=ACCOUNT, stripe_account=acct)
            return "ok"
        except stripe.InvalidRequestError as e:
            assert e.http_status == 400, e.json_body
            return "full"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert sorted(outcomes) == ["full"] * 7 + ["ok"], outcomes
    assert len(Secret.list(scope=ACCOUNT, limit=100, stripe_account=acct).data) == 10


def test_concurrent_sets_of_one_name_make_one_secret(server):
    acct, name = fresh_account(), unique()
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(
            pool.map(
                lambda i: Secret.create(name=name, payload=payload(str(i)), scope=ACCOUNT, stripe_account=acct),
                range(8),
            )
        )
    assert len({s.id for s in made}) == 1
    assert len({s.created for s in made}) == 1
    assert [s.id for s in Secret.list(scope=ACCOUNT, stripe_account=acct).data] == [made[0].id]


@pytest.mark.parametrize(
    "name",
    [
        "with space+plus&amp=eq?q#hash/slash%25pct",
        "quotes \"double\" 'single' \\ back",
        "line\nbreak\ttab",
        "[brackets][0]",
        "ünïcödé ключ 鍵 🔑",
    ],
)
def test_awkward_names_and_payloads_round_trip(server, name):
    acct = fresh_account()
    value = payload() + " " + name + " %2B+&="
    made = Secret.create(name=name, payload=value, scope=ACCOUNT, stripe_account=acct)
    assert made.name == name
    found = Secret.find(name=name, scope=ACCOUNT, expand=["payload"], stripe_account=acct)
    assert (found.id, found.name, found.payload) == (made.id, name, value)
    assert [s.name for s in Secret.list(scope=ACCOUNT, stripe_account=acct).data] == [name]
    deleted = Secret.delete_where(name=name, scope=ACCOUNT, stripe_account=acct)
    assert deleted.id == made.id
    missing = expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.find(name=name, scope=ACCOUNT, stripe_account=acct),
        status=404,
        code="resource_missing",
    )
    assert missing["message"] == f"No such secret: '{name}'"


@pytest.mark.parametrize("account", ["bogus", "acct_", "cus_123"])
def test_stripe_account_that_is_not_an_account_is_refused(server, account):
    expect_error(
        stripe.PermissionError,
        lambda: Secret.create(name=unique(), payload=payload(), scope=ACCOUNT, stripe_account=account),
        status=403,
        code="account_invalid",
    )


def test_idempotency_key_longer_than_255_is_refused(server):
    headers = {"Authorization": "Bearer sk_test_pysdk", "Idempotency-Key": "k" * 256}
    form = {"name": unique(), "payload": payload(), "scope[type]": "account"}
    answer = requests.post(server.url + "/v1/apps/secrets", data=form, headers=headers, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert answer.json()["error"]["code"] == "idempotency_key_invalid"
    ok = requests.post(server.url + "/v1/apps/secrets", data=form, headers={**headers, "Idempotency-Key": "k" * 255}, timeout=30)
    assert ok.status_code == 200, ok.text


def test_empty_scope_user_is_refused(server):
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name=unique(), payload=payload(), scope={"type": "user", "user": ""}),
        status=400,
        code="parameter_invalid_string_empty",
        param="scope[user]",
    )


def test_concurrent_requests_with_one_idempotency_key(server):
    """Racing retries of one request: each answer is the one kept answer or 409 in use."""
    acct, key = fresh_account(), unique("idem")
    form = {"name": unique(), "payload": payload(), "scope[type]": "account"}
    headers = {"Authorization": "Bearer sk_test_pysdk", "Stripe-Account": acct, "Idempotency-Key": key}

    def post(_):
        return requests.post(server.url + "/v1/apps/secrets", data=form, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post, range(8)))
    ok = [a for a in answers if a.status_code == 200]
    assert ok, [a.text for a in answers]
    assert len({a.text for a in ok}) == 1, [a.text for a in ok]
    for a in answers:
        if a.status_code != 200:
            assert a.status_code == 409, a.text
            assert a.json()["error"]["type"] == "idempotency_error"
            assert a.json()["error"]["code"] == "idempotency_key_in_use"
    assert len(Secret.list(scope=ACCOUNT, stripe_account=acct).data) == 1


def test_refused_request_keeps_nothing_under_its_idempotency_key(server):
    acct, name, key = fresh_account(), unique(), unique("idem")
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.create(name=name, payload="", scope=ACCOUNT, idempotency_key=key, stripe_account=acct),
        status=400,
        code="parameter_invalid_string_empty",
    )
    value = payload()
    fixed = Secret.create(name=name, payload=value, scope=ACCOUNT, expand=["payload"], idempotency_key=key, stripe_account=acct)
    assert fixed.payload == value
    assert fixed.last_response.headers.get("Idempotent-Replayed") != "true"


@pytest.mark.parametrize("expand", ["foo", "data.payload", "payload.bar"])
def test_find_refuses_what_it_cannot_expand(server, expand):
    acct, name = fresh_account(), unique()
    Secret.create(name=name, payload=payload(), scope=ACCOUNT, stripe_account=acct)
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.find(name=name, scope=ACCOUNT, expand=[expand], stripe_account=acct),
        status=400,
        code="parameter_invalid_expand",
    )
