"""Schemathesis hooks for secretstore (loaded by scripts/schemathesis via SCHEMATHESIS_HOOKS).

What this adds to schemathesis's own checks, and why:

1. Wire form of arrays. Stripe's spec declares `expand` (an array) with `style: deepObject`,
   which OpenAPI defines for objects only; schemathesis therefore sends `expand=a&expand=b`,
   a form no Stripe client uses and docs/api.md §3 does not define (the server refuses a parameter
   given twice with different values). The SDKs send `expand[0]=a`, curl sends `expand[]=a`:
   `_stripe_arrays` rewrites every list parameter to one of those two forms (alternating, so
   both are exercised) just before the request is sent, for query strings and form bodies alike.
   Objects (`scope`) are already sent as `scope[type]=...` by schemathesis's deepObject support.

2. Custom checks, run on every response:
   - `stripe_error_shape`: every non-2xx answer is JSON `{"error":{"type":...,"message":...}}`,
     `type` in the spec's enum, `message` a non-empty string, `code`/`param` non-empty strings
     when present, within the spec's lengths (docs/api.md §4), with `Request-Id: req_...` and
     `Cache-Control: no-store` (docs/api.md §5).
   - `contract_valid_accepted`: replaces schemathesis's `positive_data_acceptance`, which judges
     validity by the spec alone. The spec is looser than Stripe's server and docs/api.md §3 (it
     allows an empty `name`, `expires_at=0`, `limit=0`, `scope[user]` with an account scope, any
     `expand` item, both cursors together). This check decides validity from the request that
     was actually sent, by the contract's rules, and requires a 2xx for a valid one (or the
     404 `resource_missing` a find/delete of a missing secret, or an unknown cursor, earns).
   - `secret_object_rules`: a 2xx body follows docs/api.md §1 beyond the spec's schema: `id` is
     `appsecret_` + 30 alphanumerics, `expires_at` always present, `payload` only when expanded,
     `deleted: true` only on delete, `livemode` false for a test key, list `url` exact.

3. Counting. Every request sent is counted (`after_call`) and the count written to
   $SCHEMA_COUNT_FILE at exit (scripts/schemathesis also counts the server's own log lines).

4. Generation aids. `map_case` makes half of the positive cases valid by the contract as well
   as by the spec (otherwise almost every generated request is refused and success answers are
   rarely checked); `before_load_schema` adds links for the stateful phase and drops the GET
   operations' empty request bodies (see `_adjust_spec` for why each).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import threading
import time
import urllib.parse
import zlib
from typing import Any

import schemathesis
from schemathesis.transport.requests import RequestsTransport

MAX_CHARS = 5000
ERROR_TYPES = {"api_error", "card_error", "idempotency_error", "invalid_request_error"}
SECRET_ID = re.compile(r"^appsecret_[A-Za-z0-9]{30}$")
HUNDRED_YEARS = 3_155_760_000

# ---------------------------------------------------------------------------------------------
# 1. Arrays in Stripe's wire form

_original_serialize_case = RequestsTransport.serialize_case


def _stripe_arrays(params: Any) -> Any:
    """{"expand": ["a", "b"]} -> {"expand[0]": "a", "expand[1]": "b"} (or `expand[]` keys).

    Only lists of scalars are rewritten; anything else is left as schemathesis made it.
    """
    if not isinstance(params, dict):
        return params
    out: dict[str, Any] = {}
    for key, value in params.items():
        if (
            isinstance(key, str)
            and "[" not in key
            and isinstance(value, list)
            and value
            and all(not isinstance(v, (list, dict)) for v in value)
        ):
            if len(value) % 2 == 1:
                # Indexed, as Stripe's SDKs send them.
                for i, item in enumerate(value):
                    out[f"{key}[{i}]"] = item
            else:
                # Bare, as curl users write them: a list under one key is sent repeated.
                out[f"{key}[]"] = list(value)
        else:
            out[key] = value
    return out


def _serialize_case(self: RequestsTransport, case: Any, **kwargs: Any) -> dict[str, Any]:
    data = _original_serialize_case(self, case, **kwargs)
    if isinstance(data.get("params"), dict):
        data["params"] = _stripe_arrays(data["params"])
    if isinstance(data.get("data"), dict):
        data["data"] = _stripe_arrays(data["data"])
    return data


RequestsTransport.serialize_case = _serialize_case  # pinned schemathesis version: see requirements.txt

# ---------------------------------------------------------------------------------------------
# 4. Contract-valid positive data, and links for stateful testing


def _crc(value: Any) -> int:
    return zlib.crc32(repr(value).encode("utf-8", errors="replace"))


def _contractify(container: dict[str, Any], op: str, salt: int) -> None:
    """Turns spec-valid values into contract-valid ones, in place (staying spec-valid)."""
    payload_word, scope_word = ("data.payload", "data.scope") if op == "list" else ("payload", "scope")
    # scope, typed ({"scope": {...}}) or already in wire form ({"scope[type]": ...})
    typed = container.get("scope")
    if isinstance(typed, dict):
        kind_key, user_key, holder = "type", "user", typed
    else:
        kind_key, user_key, holder = "scope[type]", "scope[user]", container
    kind = holder.get(kind_key)
    if kind == "account":
        holder.pop(user_key, None)
    elif kind == "user" and not holder.get(user_key):
        holder[user_key] = f"usr_{salt % 1000}"
    for key in ("name", "payload"):
        if key in container and (not isinstance(container[key], str) or not container[key]):
            container[key] = f"{key}-{salt % 97}"
    if "expires_at" in container:
        container["expires_at"] = int(time.time()) + 3600 + salt % 1_000_000
    if "limit" in container:
        try:
            container["limit"] = abs(int(container["limit"])) % 100 + 1
        except (TypeError, ValueError):
            container.pop("limit")
    if "starting_after" in container and "ending_before" in container:
        container.pop("ending_before")
    for key in list(container):
        if key == "expand" or key.startswith("expand["):
            value = container[key]
            if isinstance(value, list):
                container[key] = [payload_word if (salt + i) % 2 else scope_word for i in range(len(value))]
            else:
                container[key] = payload_word if salt % 2 else scope_word


_OPS = {
    ("POST", "/v1/apps/secrets"): "set",
    ("GET", "/v1/apps/secrets/find"): "find",
    ("POST", "/v1/apps/secrets/delete"): "delete",
    ("GET", "/v1/apps/secrets"): "list",
}


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Half of the positive cases are made valid by the contract too (see the module docstring):
    without this, nearly every generated request is one the contract refuses (an `expand` item
    that is a random string, an empty name, `scope[user]` with an account scope), and the success
    answers, the ones response_schema_conformance matters most for, are never exercised."""
    meta = getattr(case, "meta", None)
    generation = getattr(meta, "generation", None)
    mode = getattr(generation, "mode", None)
    if mode is None or not getattr(mode, "is_positive", False):
        return case
    op = _OPS.get((case.method.upper(), case.operation.path))
    container = case.body if case.method.upper() == "POST" else case.query
    if op is None or not isinstance(container, dict):
        return case
    salt = _crc(sorted(container.items(), key=str))
    if salt % 2 == 0:
        _contractify(container, op, salt // 2)
    return case


def _adjust_spec(raw_schema: dict[str, Any]) -> None:
    """Two in-memory changes to the loaded spec (the committed file is not touched):

    - Links for the stateful phase: set -> find and set -> list, by the answer's `name` and
      `scope`, so schemathesis finds what it just stored. No link targets delete: delete takes
      its parameters in the body, and schemathesis's ensure_resource_availability check only
      looks at query/path parameters when deciding that a link supplied all of them, so a
      delete whose body was *not* taken from the link (a random name, a 404) would be blamed
      on the server.
    - The GET operations' request bodies are dropped. Stripe's spec gives each GET an empty
      form body (`properties: {}`, `additionalProperties: false`); a GET's parameters are in its
      query string (docs/api.md §3) and the server, like Stripe, does not read a GET's body, so a
      "schema-violating" GET body is not something the server could reject.
    """
    paths = raw_schema.get("paths", {})
    by_answer = {"name": "$response.body#/name", "scope": "$response.body#/scope"}
    set_answer = paths.get("/v1/apps/secrets", {}).get("post", {}).get("responses", {}).get("200")
    if isinstance(set_answer, dict):
        set_answer.setdefault("links", {}).update(
            {
                "FindSetSecret": {"operationId": "GetAppsSecretsFind", "parameters": dict(by_answer)},
                "ListSetScope": {"operationId": "GetAppsSecrets", "parameters": {"scope": "$response.body#/scope"}},
            }
        )
    for item in paths.values():
        get = item.get("get") if isinstance(item, dict) else None
        if isinstance(get, dict):
            get.pop("requestBody", None)


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
    _adjust_spec(raw_schema)


# ---------------------------------------------------------------------------------------------
# 5. The one documented limit below the application

# hyper, the HTTP layer, refuses a request target longer than 65,534 bytes itself, with a bare
# 414 (docs/errors.md, "Limits of the HTTP layer"). Only GETs with huge query strings reach it
# (find with a 5,000-character name and user id of 4-byte characters). Such an answer (414, or
# 431 when the target outgrows hyper's read buffer) is not a failure; either to a shorter request
# still is, as is every other bare answer.
MAX_URI_BYTES = 65_534


def _uri_bytes(response: Any) -> int:
    request = getattr(response, "request", None)
    url = getattr(request, "url", "") or ""
    path = url.split("://", 1)[-1]
    path = path[path.find("/"):] if "/" in path else path
    return len(path.encode())


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    # 414, or 431 when the target is even longer than hyper's read buffer (~106 KB).
    if response is not None and response.status_code in (414, 431) and _uri_bytes(response) > MAX_URI_BYTES:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# 3. Counting

_count_lock = threading.Lock()
_count = {"requests": 0, "by_status": {}}


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    with _count_lock:
        _count["requests"] += 1
        bucket = f"{response.status_code // 100}xx"
        _count["by_status"][bucket] = _count["by_status"].get(bucket, 0) + 1


def _write_count() -> None:
    path = os.environ.get("SCHEMA_COUNT_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(_count, f)


atexit.register(_write_count)

# ---------------------------------------------------------------------------------------------
# The request as sent, decoded the way docs/api.md §3 reads it


def _sent_params(response: Any) -> tuple[str, str, list[tuple[str, str]]]:
    """Method, path and every (key, value) pair of the query and, on a POST, the form body."""
    request = response.request
    url = urllib.parse.urlsplit(request.url)
    try:
        pairs = _decode(url.query)
        if request.method == "POST" and request.body:
            body = request.body
            if isinstance(body, bytes):
                body = body.decode("utf-8")
            content_type = request.headers.get("Content-Type", "")
            if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
                pairs += _decode(body)
            else:
                pairs.append(("\0unparsed-body", body))
    except UnicodeDecodeError:
        # Not UTF-8 once decoded: the contract refuses it (parameter_invalid_encoding).
        pairs = [("\0not-utf-8", "")]
    return request.method, url.path, pairs


def _decode(raw: str) -> list[tuple[str, str]]:
    return urllib.parse.parse_qsl(raw, keep_blank_values=True, errors="strict")


class _Invalid(Exception):
    pass


def _contract_valid(method: str, path: str, pairs: list[tuple[str, str]]) -> bool:
    """Whether docs/api.md §2 and §3 accepts these parameters (a conservative reading: anything this
    does not recognise counts as invalid, so the check never demands acceptance wrongly)."""
    try:
        _judge(method, path, pairs)
        return True
    except _Invalid:
        return False


def _judge(method: str, path: str, pairs: list[tuple[str, str]]) -> None:
    ops = {
        ("POST", "/v1/apps/secrets"): "set",
        ("GET", "/v1/apps/secrets/find"): "find",
        ("POST", "/v1/apps/secrets/delete"): "delete",
        ("GET", "/v1/apps/secrets"): "list",
    }
    op = ops.get((method, path))
    if op is None:
        raise _Invalid
    allowed = {
        "set": {"name", "payload", "expires_at"},
        "find": {"name"},
        "delete": {"name"},
        "list": {"limit", "starting_after", "ending_before"},
    }[op]
    if len(pairs) > 256:
        raise _Invalid
    flat: dict[str, str] = {}
    scope: dict[str, str] = {}
    plain: list[str] = []  # expand=x
    bare: list[str] = []  # expand[]=x
    indexed: dict[str, str] = {}  # expand[0]=x
    for key, value in pairs:
        m = re.fullmatch(r"scope\[(type|user)\]", key)
        if m:
            if scope.get(m.group(1), value) != value:
                raise _Invalid
            scope[m.group(1)] = value
            continue
        m = re.fullmatch(r"expand\[(\d{1,9})?\]", key)
        if m:
            if m.group(1) is None:
                bare.append(value)
            else:
                index = str(int(m.group(1)))
                if indexed.get(index, value) != value:
                    raise _Invalid
                indexed[index] = value
            continue
        if key == "expand":
            plain.append(value)
            continue
        if key not in allowed:
            raise _Invalid
        if flat.get(key, value) != value:
            raise _Invalid
        flat[key] = value
    if plain and (bare or indexed or len(set(plain)) > 1):
        # `expand=a` with `expand[]=b`, or `expand=a&expand=b`: one name given two ways.
        raise _Invalid
    items = plain[:1] + bare + list(indexed.values())
    if len(bare) + len(indexed) > 64:
        raise _Invalid
    expandable = {"data.payload", "data.scope"} if op == "list" else {"payload", "scope"}
    if any(item not in expandable for item in items):
        raise _Invalid

    def text(value: str | None, required: bool) -> None:
        if value is None:
            if required:
                raise _Invalid
            return
        if not (1 <= len(value) <= MAX_CHARS):
            raise _Invalid

    if scope.get("type") == "account":
        if "user" in scope:
            raise _Invalid
    elif scope.get("type") == "user":
        text(scope.get("user"), True)
    else:
        raise _Invalid
    if op in ("set", "find", "delete"):
        text(flat.get("name"), True)
    if op == "set":
        text(flat.get("payload"), True)
        expires = flat.get("expires_at", "")
        if expires != "":
            if not re.fullmatch(r"[+-]?\d{1,19}", expires):
                raise _Invalid
            ts = int(expires)
            now = int(time.time())
            # A margin either side for the time the request took.
            if not (now + 5 < ts < now + HUNDRED_YEARS - 5):
                raise _Invalid
    if op == "list":
        limit = flat.get("limit", "")
        if limit != "" and not (re.fullmatch(r"\+?\d{1,3}", limit) and 1 <= int(limit) <= 100):
            raise _Invalid
        after, before = flat.get("starting_after", ""), flat.get("ending_before", "")
        if after and before:
            raise _Invalid
        # Cursors are held to the same 5,000-character limit as every string (docs/api.md §3);
        # an empty one is the same as none.
        for cursor in (after, before):
            if cursor:
                text(cursor, True)
        # A cursor that is not one of our ids is a 404 (`resource_missing`), accepted below.


# ---------------------------------------------------------------------------------------------
# 2. Checks


def _header(response: Any, name: str) -> str | None:
    values = response.headers.get(name.lower())
    if not values:
        return None
    return values[0] if isinstance(values, list) else values


@schemathesis.check
def stripe_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every answer carries Request-Id and Cache-Control; every non-2xx is Stripe's error JSON."""
    request_id = _header(response, "Request-Id")
    if not request_id or not request_id.startswith("req_"):
        raise AssertionError(f"Request-Id header missing or malformed: {request_id!r}")
    if _header(response, "Cache-Control") != "no-store":
        raise AssertionError(f"Cache-Control is {_header(response, 'Cache-Control')!r}, not no-store")
    if 200 <= response.status_code < 300:
        return None
    content_type = (_header(response, "Content-Type") or "").split(";")[0].strip()
    if content_type != "application/json":
        raise AssertionError(f"HTTP {response.status_code} answered with Content-Type {content_type!r}")
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"HTTP {response.status_code} body is not JSON: {exc}") from None
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        raise AssertionError(f'HTTP {response.status_code} body is not {{"error": {{...}}}}: {body!r}'[:500])
    error = body["error"]
    if error.get("type") not in ERROR_TYPES:
        raise AssertionError(f"error.type {error.get('type')!r} is not one of {sorted(ERROR_TYPES)}")
    message = error.get("message")
    if not isinstance(message, str) or not message.strip():
        raise AssertionError(f"error.message is empty or not a string: {message!r}")
    if len(message) > 40_000:
        raise AssertionError(f"error.message has {len(message)} characters (spec: at most 40000)")
    for field in ("code", "param"):
        if field in error:
            value = error[field]
            if not isinstance(value, str) or not value:
                raise AssertionError(f"error.{field} is empty or not a string: {value!r}")
            if len(value) > MAX_CHARS:
                raise AssertionError(f"error.{field} has {len(value)} characters (spec: at most {MAX_CHARS})")
    if response.status_code >= 500 and error["type"] != "api_error":
        raise AssertionError(f"HTTP {response.status_code} with type {error['type']}")
    return None


@schemathesis.check
def contract_valid_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request docs/api.md §3 accepts gets a 2xx (or the 404 a missing secret or cursor earns)."""
    method, path, pairs = _sent_params(response)
    auth = response.request.headers.get("Authorization", "")
    if not auth.startswith("Bearer sk_test_") or not _contract_valid(method, path, pairs):
        return None
    status = response.status_code
    if 200 <= status < 300:
        return None
    code = None
    try:
        code = json.loads(response.content)["error"].get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    if status == 404 and code == "resource_missing":
        return None
    raise AssertionError(
        f"A request the contract accepts was refused with HTTP {status} ({code}): "
        f"{method} {path} {pairs!r}"[:2000]
    )


@schemathesis.check
def secret_object_rules(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 2xx body follows docs/api.md §1 (the parts the spec's schema does not say)."""
    if not 200 <= response.status_code < 300:
        return None
    method, path, pairs = _sent_params(response)
    body = json.loads(response.content)
    expanded = {v for k, v in pairs if k == "expand" or k.startswith("expand[")}
    if path == "/v1/apps/secrets" and method == "GET":
        if body.get("object") != "list" or body.get("url") != "/v1/apps/secrets":
            raise AssertionError(f"list envelope: object={body.get('object')!r} url={body.get('url')!r}")
        objects, want_payload, deleted = body.get("data", []), "data.payload" in expanded, False
    else:
        objects, want_payload = [body], "payload" in expanded
        deleted = path == "/v1/apps/secrets/delete"
    for obj in objects:
        if not SECRET_ID.match(str(obj.get("id"))):
            raise AssertionError(f"id {obj.get('id')!r} is not appsecret_ + 30 alphanumerics")
        if obj.get("object") != "apps.secret":
            raise AssertionError(f"object is {obj.get('object')!r}")
        if "expires_at" not in obj:
            raise AssertionError("expires_at missing (it is always present, null when unset)")
        if ("payload" in obj) != want_payload:
            raise AssertionError(f"payload {'missing' if want_payload else 'present'}; expand={sorted(expanded)}")
        if deleted != ("deleted" in obj) or (deleted and obj["deleted"] is not True):
            raise AssertionError(f"deleted field wrong on {method} {path}: {obj.get('deleted')!r}")
        if obj.get("livemode") is not False:
            raise AssertionError(f"livemode {obj.get('livemode')!r} for a test-mode key")
        scope = obj.get("scope") or {}
        if scope.get("type") == "account" and "user" in scope:
            raise AssertionError(f"an account scope with a user: {scope!r}")
    return None
