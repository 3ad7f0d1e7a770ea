"""Listing and auto-pagination through stripe-python, both client styles.

This module's server holds up to 100 secrets per scope.
"""

import pytest
import stripe

from harness import ID_RE, SECRET_KEYS, app_key, expect_error, fresh_account, payload, unique

SERVER_ARGS = ["--max-secrets-per-scope", "100"]
ACCOUNT = {"type": "account"}
Secret = stripe.apps.Secret


@pytest.fixture(scope="module")
def filled(server):
    """25 secrets in one fresh account scope; returns (account, [(id, name, payload)] in creation order)."""
    acct = fresh_account()
    made = []
    for i in range(25):
        name, value = unique(f"page{i:02d}"), payload(str(i))
        s = Secret.create(name=name, payload=value, scope=ACCOUNT, stripe_account=acct)
        made.append((s.id, name, value))
    return acct, made


def test_first_page_shape(filled):
    acct, made = filled
    page = Secret.list(scope=ACCOUNT, limit=10, stripe_account=acct)
    body = page.last_response.data
    assert set(body) == {"object", "url", "has_more", "data"}
    assert body["object"] == "list"
    assert body["url"] == "/v1/apps/secrets"
    assert body["has_more"] is True
    assert len(body["data"]) == 10
    for item in body["data"]:
        assert set(item) == SECRET_KEYS
        assert ID_RE.match(item["id"])
        assert item["object"] == "apps.secret"
        assert item["scope"] == {"type": "account"}
    newest_first = [m[0] for m in reversed(made)]
    assert [item["id"] for item in body["data"]] == newest_first[:10]


def test_default_limit_is_10(filled):
    acct, _ = filled
    page = Secret.list(scope=ACCOUNT, stripe_account=acct)
    assert len(page.data) == 10 and page.has_more is True


def test_auto_paging_iter_returns_all_newest_first(filled):
    acct, made = filled
    seen = [s.id for s in Secret.list(scope=ACCOUNT, limit=10, stripe_account=acct).auto_paging_iter()]
    assert len(seen) == 25
    assert len(set(seen)) == 25
    assert seen == [m[0] for m in reversed(made)]


def test_auto_paging_with_expanded_payloads(filled):
    acct, made = filled
    items = list(
        Secret.list(scope=ACCOUNT, limit=7, expand=["data.payload"], stripe_account=acct).auto_paging_iter()
    )
    assert [(s.id, s.name, s.payload) for s in items] == list(reversed(made))
    for s in items:
        assert set(s.to_dict()) == SECRET_KEYS | {"payload"}


def test_pages_by_hand(filled):
    acct, made = filled
    ids = [m[0] for m in reversed(made)]
    p1 = Secret.list(scope=ACCOUNT, limit=10, stripe_account=acct)
    p2 = Secret.list(scope=ACCOUNT, limit=10, starting_after=p1.data[-1].id, stripe_account=acct)
    p3 = Secret.list(scope=ACCOUNT, limit=10, starting_after=p2.data[-1].id, stripe_account=acct)
    assert [s.id for s in p1.data] == ids[:10] and p1.has_more is True
    assert [s.id for s in p2.data] == ids[10:20] and p2.has_more is True
    assert [s.id for s in p3.data] == ids[20:] and p3.has_more is False
    back = Secret.list(scope=ACCOUNT, limit=10, ending_before=p3.data[0].id, stripe_account=acct)
    assert [s.id for s in back.data] == ids[10:20] and back.has_more is True
    last = Secret.list(scope=ACCOUNT, limit=100, stripe_account=acct)
    assert [s.id for s in last.data] == ids and last.has_more is False


def test_auto_paging_backwards_from_ending_before(filled):
    acct, made = filled
    ids = [m[0] for m in reversed(made)]
    seen = [
        s.id
        for s in Secret.list(scope=ACCOUNT, limit=4, ending_before=ids[-1], stripe_account=acct).auto_paging_iter()
    ]
    # Backwards iteration yields items in reverse (oldest to newest).
    assert seen == list(reversed(ids[:-1]))


def test_replace_keeps_its_place_in_the_list(server):
    acct = fresh_account()
    names = [unique(f"keep{i}") for i in range(3)]
    ids = [Secret.create(name=n, payload=payload(), scope=ACCOUNT, stripe_account=acct).id for n in names]
    Secret.create(name=names[0], payload=payload("again"), scope=ACCOUNT, stripe_account=acct)
    assert [s.id for s in Secret.list(scope=ACCOUNT, stripe_account=acct).data] == list(reversed(ids))


def test_both_cursors_are_exclusive(filled):
    acct, made = filled
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.list(
            scope=ACCOUNT, starting_after=made[5][0], ending_before=made[1][0], stripe_account=acct
        ),
        status=400,
        code="parameters_exclusive",
    )


@pytest.mark.parametrize("limit", [0, 101, -1])
def test_limit_out_of_range(filled, limit):
    acct, _ = filled
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.list(scope=ACCOUNT, limit=limit, stripe_account=acct),
        status=400,
        code="parameter_out_of_range",
        param="limit",
    )


def test_limit_not_an_integer(filled):
    acct, _ = filled
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.list(scope=ACCOUNT, limit="ten", stripe_account=acct),
        status=400,
        code="parameter_invalid_integer",
        param="limit",
    )


def test_unknown_cursor_is_resource_missing(filled):
    acct, _ = filled
    expect_error(
        stripe.InvalidRequestError,
        lambda: Secret.list(
            scope=ACCOUNT, starting_after="appsecret_" + "0" * 30, stripe_account=acct
        ),
        status=404,
        code="resource_missing",
        param="starting_after",
    )


def test_cursor_from_another_scope_is_refused(filled):
    acct, made = filled
    with pytest.raises(stripe.InvalidRequestError) as info:
        Secret.list(scope={"type": "user", "user": "usr_other"}, starting_after=made[0][0], stripe_account=acct)
    assert info.value.http_status in (400, 404)
    assert info.value.param == "starting_after"


def test_empty_scope_lists_nothing(server):
    page = Secret.list(scope=ACCOUNT, stripe_account=fresh_account())
    body = page.last_response.data
    assert body == {"object": "list", "url": "/v1/apps/secrets", "has_more": False, "data": []}


# The StripeClient style ---------------------------------------------------------------------


def test_stripe_client_lists_and_auto_pages(server, filled):
    acct, made = filled
    client = stripe.StripeClient("sk_test_pysdk", base_addresses={"api": server.url}, max_network_retries=0)
    page = client.v1.apps.secrets.list(
        params={"scope": ACCOUNT, "limit": 10, "expand": ["data.payload"]},
        options={"stripe_account": acct},
    )
    items = list(page.auto_paging_iter())
    assert [(s.id, s.name, s.payload) for s in items] == list(reversed(made))


def test_stripe_client_sees_only_its_own_app(server, filled):
    acct, _ = filled
    client = stripe.StripeClient(app_key(), base_addresses={"api": server.url}, max_network_retries=0)
    page = client.v1.apps.secrets.list(params={"scope": ACCOUNT}, options={"stripe_account": acct})
    assert page.data == [] and page.has_more is False
