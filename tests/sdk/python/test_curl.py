"""The API as a person at a shell meets it: curl (and plain HTTP where curl is awkward)."""

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import requests

from harness import ID_RE, PAYLOAD_MARKER, REQUEST_ID_RE, SECRET_KEYS, payload, unique

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(*args: str) -> Tuple[int, Dict[str, str], dict]:
    """Runs curl; returns (status, headers with lower-case names, JSON body)."""
    with tempfile.TemporaryDirectory() as tmp:
        head, body = Path(tmp) / "head", Path(tmp) / "body"
        proc = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "-D", str(head), "-o", str(body), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        lines = head.read_bytes().decode("latin-1").replace("\r\n", "\n").split("\n")
        # Skip any interim (1xx) answers.
        blocks: List[List[str]] = [[]]
        for line in lines:
            if line == "":
                blocks.append([])
            else:
                blocks[-1].append(line)
        final = [b for b in blocks if b and not re.match(r"HTTP/\S+ 1\d\d", b[0])][-1]
        status = int(final[0].split()[1])
        headers = {}
        for line in final[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        text = body.read_text("utf-8")
        return status, headers, (json.loads(text) if text else {})


def assert_common_headers(headers: Dict[str, str]) -> None:
    assert REQUEST_ID_RE.match(headers.get("request-id", "")), headers
    assert headers.get("cache-control") == "no-store", headers


def assert_error(status, headers, body, *, want_status, type_="invalid_request_error", code=None, param=None, message=None):
    assert status == want_status, body
    assert_common_headers(headers)
    assert headers.get("content-type", "").startswith("application/json"), headers
    err = body["error"]
    assert err["type"] == type_, err
    assert isinstance(err.get("message"), str) and err["message"], err
    if code is not None:
        assert err.get("code") == code, err
    if param is not None:
        assert err.get("param") == param, err
    if message is not None:
        assert err["message"] == message, err
    return err


@pytest.fixture
def key():
    """A fresh dev-mode app, so that names like `a` are free."""
    return "sk_test_curl" + unique("")[1:13]


def test_readme_walkthrough(server, key):
    url = server.url + "/v1/apps/secrets"
    status, headers, body = curl("-u", key + ":", url, "-d", "name=a", "-d", "payload=b", "-d", "scope[type]=account")
    assert status == 200, body
    assert_common_headers(headers)
    assert headers["content-type"].startswith("application/json")
    assert set(body) == SECRET_KEYS
    assert ID_RE.match(body["id"])
    assert body["name"] == "a" and body["scope"] == {"type": "account"}
    assert body["livemode"] is False and body["expires_at"] is None

    status, headers, found = curl(
        "-G", "-u", key + ":", url + "/find", "-d", "name=a", "-d", "scope[type]=account", "-d", "expand[]=payload"
    )
    assert status == 200, found
    assert_common_headers(headers)
    assert found == {**body, "payload": "b"}

    status, headers, listed = curl("-G", "-u", key + ":", url, "-d", "scope[type]=account")
    assert status == 200
    assert listed == {"object": "list", "url": "/v1/apps/secrets", "has_more": False, "data": [body]}

    status, headers, deleted = curl("-u", key + ":", url + "/delete", "-d", "name=a", "-d", "scope[type]=account")
    assert status == 200
    assert deleted == {**body, "deleted": True}

    status, headers, missing = curl("-G", "-u", key + ":", url + "/find", "-d", "name=a", "-d", "scope[type]=account")
    assert_error(
        status, headers, missing, want_status=404, code="resource_missing", param="name", message="No such secret: 'a'"
    )


def test_bearer_and_basic_auth_are_the_same_credential(server, key):
    url = server.url + "/v1/apps/secrets"
    status, _, made = curl(
        "-H", f"Authorization: Bearer {key}", url, "-d", "name=bearer", "-d", "payload=p", "-d", "scope[type]=account"
    )
    assert status == 200, made
    status, headers, found = curl("-G", "-u", key + ":", url + "/find", "-d", "name=bearer", "-d", "scope[type]=account")
    assert status == 200 and found["id"] == made["id"]
    assert_common_headers(headers)


def test_bracket_forms_raw_encoded_indexed_and_bare(server, key):
    url = server.url + "/v1/apps/secrets"
    status, _, made = curl(
        "-u", key + ":", url,
        "-d", "name=enc", "-d", "payload=p1",
        "-d", "scope%5Btype%5D=user", "-d", "scope%5Buser%5D=usr_9",
        "-d", "expand%5B0%5D=payload",
    )
    assert status == 200, made
    assert made["scope"] == {"type": "user", "user": "usr_9"} and made["payload"] == "p1"
    for expand in ("expand[]=payload", "expand[0]=payload", "expand%5B%5D=payload"):
        status, _, found = curl(
            "-G", "-u", key + ":", url + "/find",
            "-d", "name=enc", "-d", "scope[type]=user", "-d", "scope[user]=usr_9", "-d", expand,
        )
        assert status == 200, (expand, found)
        assert found["payload"] == "p1", expand


def test_post_merges_query_string_parameters(server, key):
    url = server.url + "/v1/apps/secrets?name=fromquery&scope[type]=account"
    status, _, made = curl("-g", "-u", key + ":", url, "-d", "payload=q")
    assert status == 200, made
    assert made["name"] == "fromquery"
    status, _, found = curl(
        "-G", "-u", key + ":", server.url + "/v1/apps/secrets/find",
        "-d", "name=fromquery", "-d", "scope[type]=account", "-d", "expand[]=payload",
    )
    assert status == 200 and found["payload"] == "q"


def test_unknown_path_is_404_json(server, key):
    status, headers, body = curl("-u", key + ":", server.url + "/v1/foo")
    err = assert_error(status, headers, body, want_status=404)
    # Stripe's sentence; a server may add a hint after it.
    assert err["message"].startswith("Unrecognized request URL (GET: /v1/foo)."), err


def test_unknown_method_is_404_json(server, key):
    status, headers, body = curl("-X", "PUT", "-u", key + ":", server.url + "/v1/apps/secrets", "-d", "name=x")
    err = assert_error(status, headers, body, want_status=404)
    assert err["message"].startswith("Unrecognized request URL (PUT: /v1/apps/secrets)"), err


def test_unknown_parameter_is_parameter_unknown(server, key):
    secret_value = payload()
    status, headers, body = curl(
        "-u", key + ":", server.url + "/v1/apps/secrets",
        "-d", "name=a", "-d", f"payload={secret_value}", "-d", "scope[type]=account", "-d", "foo=bar",
    )
    assert_error(
        status, headers, body,
        want_status=400, code="parameter_unknown", param="foo", message="Received unknown parameter: foo",
    )
    assert PAYLOAD_MARKER not in json.dumps(body)
    status, headers, body = curl(
        "-G", "-u", key + ":", server.url + "/v1/apps/secrets", "-d", "scope[type]=account", "-d", "scope[colour]=red"
    )
    assert_error(status, headers, body, want_status=400, code="parameter_unknown", param="scope[colour]")


def test_missing_parameter(server, key):
    status, headers, body = curl("-u", key + ":", server.url + "/v1/apps/secrets", "-d", "payload=b", "-d", "scope[type]=account")
    assert_error(
        status, headers, body,
        want_status=400, code="parameter_missing", param="name", message="Missing required param: name.",
    )


def test_no_key_and_bad_key_are_401(server):
    url = server.url + "/v1/apps/secrets?scope[type]=account"
    status, headers, body = curl("-g", url)
    assert_error(status, headers, body, want_status=401)
    status, headers, body = curl("-g", "-u", "sk_test_:", url)
    assert_error(status, headers, body, want_status=401)
    status, headers, body = curl("-g", "-H", "Authorization: Bearer not_a_key", url)
    err = assert_error(status, headers, body, want_status=401)
    assert "not_a_key" not in err["message"]


def test_every_answer_has_a_unique_request_id(server, key):
    url = server.url + "/v1/apps/secrets"
    seen = set()
    answers = [
        curl("-u", key + ":", url, "-d", "name=r", "-d", "payload=b", "-d", "scope[type]=account"),
        curl("-G", "-u", key + ":", url, "-d", "scope[type]=account"),
        curl("-G", "-u", key + ":", url + "/find", "-d", "name=nope", "-d", "scope[type]=account"),
        curl("-u", key + ":", url, "-d", "scope[type]=account"),
        curl(url),
        curl("-u", key + ":", server.url + "/nowhere"),
    ]
    for status, headers, _ in answers:
        assert_common_headers(headers)
        seen.add(headers["request-id"])
    assert len(seen) == len(answers)
    assert [a[0] for a in answers] == [200, 200, 404, 400, 401, 404]


def test_stripe_version_is_echoed_and_context_accepted(server, key):
    status, headers, body = curl(
        "-G", "-u", key + ":", server.url + "/v1/apps/secrets",
        "-H", "Stripe-Version: 2023-08-16", "-H", "Stripe-Context: ctx_123", "-d", "scope[type]=account",
    )
    assert status == 200, body
    assert headers.get("stripe-version") == "2023-08-16"


def test_json_body_is_refused(server, key):
    status, headers, body = curl(
        "-u", key + ":", server.url + "/v1/apps/secrets",
        "-H", "Content-Type: application/json",
        "-d", json.dumps({"name": "j", "payload": "p", "scope": {"type": "account"}}),
    )
    assert_error(status, headers, body, want_status=415, code="content_type_invalid")


def test_health_endpoints(server):
    assert requests.get(server.url + "/healthz", timeout=30).status_code == 200
    assert requests.get(server.url + "/readyz", timeout=30).status_code == 200


def test_largest_valid_request_is_admitted(server, key):
    # A name and a payload of 5,000 four-byte characters, and the longest user id with which a
    # find can still carry both in its URL (docs/api.md §3); found back whole.
    big, user = "😀" * 5000, "😀" * 450
    answer = requests.post(
        server.url + "/v1/apps/secrets",
        data={"name": big, "payload": big, "scope[type]": "user", "scope[user]": user},
        auth=(key, ""),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["name"] == big
    assert answer.json()["scope"] == {"type": "user", "user": user}
    found = requests.get(
        server.url + "/v1/apps/secrets/find",
        params={"name": big, "scope[type]": "user", "scope[user]": user, "expand[]": "payload"},
        auth=(key, ""),
        timeout=60,
    )
    assert found.status_code == 200, found.text[:500]
    assert found.json()["payload"] == big


def test_a_name_and_user_too_long_together_to_find_are_refused_at_set(server, key):
    big = "😀" * 5000
    answer = requests.post(
        server.url + "/v1/apps/secrets",
        data={"name": big, "payload": "p", "scope[type]": "user", "scope[user]": big},
        auth=(key, ""),
        timeout=60,
    )
    assert answer.status_code == 400, answer.text[:500]
    assert answer.json()["error"]["code"] == "parameter_invalid_string_too_long"
    assert answer.json()["error"]["param"] == "name"


def test_oversized_body_is_413(server, key):
    answer = requests.post(
        server.url + "/v1/apps/secrets",
        data={"name": "huge", "payload": "x" * 2_000_000, "scope[type]": "account"},
        auth=(key, ""),
        timeout=60,
    )
    assert answer.status_code == 413, answer.text[:500]
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert answer.json()["error"]["code"] == "request_too_large"
    assert_common_headers({k.lower(): v for k, v in answer.headers.items()})
