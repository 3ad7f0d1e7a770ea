"""Starts the real `secretstore` binary for the end-to-end SDK tests, and helpers.

The binary is `$SECRETSTORE_BIN`, else `target/debug/secretstore` under the
repository root (scripts/test builds it first).
"""

from __future__ import annotations

import os
import re
import secrets as _random
import signal
import string
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import stripe

REPO_ROOT = Path(__file__).resolve().parents[3]
READY_RE = re.compile(r"^secretstore listening on (https?://127\.0\.0\.1:(\d+))\s*$")
ADMIN_RE = re.compile(r"^secretstore admin listening on (https?://127\.0\.0\.1:\d+)\s*$")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0

# Every payload the tests store contains this marker, so that files the server
# wrote (data directory, logs) can be searched for plaintext.
PAYLOAD_MARKER = "zqxPLAINTEXTzqx"

ID_RE = re.compile(r"^appsecret_[A-Za-z0-9]{30}$")
REQUEST_ID_RE = re.compile(r"^req_[A-Za-z0-9_]+$")
SECRET_KEYS = {"id", "object", "created", "expires_at", "livemode", "name", "scope"}


def binary_path() -> Path:
    raw = os.environ.get("SECRETSTORE_BIN", "target/debug/secretstore")
    path = Path(raw)
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def unique(prefix: str = "name") -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def payload(tag: str = "") -> str:
    """A payload carrying PAYLOAD_MARKER (see above)."""
    return f"{PAYLOAD_MARKER}-{tag}-{uuid.uuid4().hex}"


def fresh_account() -> str:
    """An `acct_` id no other test uses: a fresh, empty namespace in dev mode."""
    alphabet = string.ascii_letters + string.digits
    return "acct_" + "".join(_random.choice(alphabet) for _ in range(16))


def app_key(mode: str = "test", app: Optional[str] = None, kind: str = "sk") -> str:
    """A dev-mode key for app `app` (default: a fresh app of its own)."""
    return f"{kind}_{mode}_{app or 'app' + uuid.uuid4().hex[:12]}"


class Server:
    """One `secretstore serve --dev` process."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        extra_args: Optional[List[str]] = None,
        env: Optional[Dict[str, str]] = None,
        use_flags: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = list(extra_args or [])
        self.extra_env = dict(env or {})
        self.use_flags = use_flags
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self.port = 0
        self.admin_url = ""
        self._drain: Optional[threading.Thread] = None

    def start(self) -> "Server":
        binary = binary_path()
        if not binary.exists():
            pytest.fail(
                f"secretstore binary not found at {binary}; run `cargo build --bin secretstore` "
                "or set SECRETSTORE_BIN",
                pytrace=False,
            )
        # Settings come only from this harness, never from the caller's shell.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETSTORE_")}
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.extra_env)
        args = [str(binary), "serve"]
        if self.use_flags:
            args += ["--dev", "--listen", "127.0.0.1:0", "--data", str(self.data_dir)]
        args += self.extra_args
        # Private, as the server requires of an existing data directory.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n=== start: {' '.join(args)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=str(self.data_dir.parent),
            env=env,
        )
        log.close()

        ready = threading.Event()
        found: Dict[str, str] = {}
        expect_admin = any(a in args for a in ("--admin-listen", "--admin-token-file")) or any(
            k in env for k in ("SECRETSTORE_ADMIN_TOKEN", "SECRETSTORE_ADMIN_TOKEN_FILE")
        )
        proc = self.proc
        log_path = self.log_path

        def drain() -> None:
            # Read stdout until EOF so the pipe never fills; keep a copy in the log.
            assert proc.stdout is not None
            with open(log_path, "ab") as out:
                for raw in iter(proc.stdout.readline, b""):
                    out.write(b"[stdout] " + raw)
                    out.flush()
                    if not ready.is_set():
                        line = raw.decode("utf-8", "replace")
                        m = READY_RE.match(line)
                        if m:
                            found["url"], found["port"] = m.group(1), m.group(2)
                            # A server with an admin listener says where it is next.
                            if not expect_admin:
                                ready.set()
                        a = ADMIN_RE.match(line)
                        if a:
                            found["admin"] = a.group(1)
                            ready.set()
            ready.set()

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"server did not print its ready line in {START_TIMEOUT_S}s\n{self.log_tail()}")
        if "url" not in found:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
            pytest.fail(f"server exited ({code}) before it was ready\n{self.log_tail()}", pytrace=False)
        self.url, self.port = found["url"], int(found["port"])
        self.admin_url = found.get("admin", "")
        return self

    def start_expecting_refusal(self, timeout: float = STOP_TIMEOUT_S) -> str:
        """Starts the server where it must refuse to run; returns what it printed.

        Fails the test if it gets as far as listening, or has not exited within `timeout`.
        """
        binary = binary_path()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETSTORE_")}
        env.update(self.extra_env)
        args = [str(binary), "serve"]
        if self.use_flags:
            args += ["--dev", "--listen", "127.0.0.1:0", "--data", str(self.data_dir)]
        args += self.extra_args
        try:
            done = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                cwd=str(self.data_dir.parent),
                env=env,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode("utf-8", "replace")
            raise AssertionError(f"server did not refuse to start; it printed:\n{out}")
        out = done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")
        with open(self.log_path, "ab") as log:
            log.write(out.encode())
        assert done.returncode != 0, f"server exited 0 but should have refused:\n{out}"
        assert "listening on" not in done.stdout.decode("utf-8", "replace"), out
        return out

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Sends `sig` and waits for the process; returns its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not stop within {STOP_TIMEOUT_S}s of signal {sig}")
        if self._drain is not None:
            self._drain.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def assert_secret_shape(obj: dict, *, name: str, scope: dict, livemode: bool, with_payload: bool = False):
    """Checks a raw JSON `apps.secret` against docs/api.md §1."""
    expected_keys = set(SECRET_KEYS)
    if with_payload:
        expected_keys.add("payload")
    assert set(obj.keys()) == expected_keys, obj
    assert ID_RE.match(obj["id"]), obj["id"]
    assert obj["object"] == "apps.secret"
    assert isinstance(obj["created"], int) and not isinstance(obj["created"], bool)
    assert abs(obj["created"] - time.time()) < 300, obj["created"]
    assert obj["livemode"] is livemode
    assert obj["name"] == name
    assert obj["scope"] == scope


ANY = object()


def expect_error(exc_cls, fn, *, status, type_="invalid_request_error", code=ANY, param=ANY, message=ANY):
    """Runs `fn`, which must raise `exc_cls` carrying exactly the given error fields.

    Returns the raw `error` object of the answer for further checks.
    """
    with pytest.raises(exc_cls) as info:
        fn()
    err = info.value
    assert err.http_status == status, (err.http_status, err.json_body)
    body = (err.json_body or {}).get("error")
    assert isinstance(body, dict), err.json_body
    assert body.get("type") == type_, body
    if code is not ANY:
        assert body.get("code") == code, body
        # stripe-python fills `code` for InvalidRequestError (others leave it None).
        if isinstance(err, stripe.InvalidRequestError):
            assert err.code == code
    if param is not ANY:
        assert body.get("param") == param, body
    if message is not ANY:
        assert body.get("message") == message, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert PAYLOAD_MARKER not in (err.http_body or ""), body
    request_id = (err.headers or {}).get("Request-Id") or (err.headers or {}).get("request-id")
    assert request_id and REQUEST_ID_RE.match(request_id), err.headers
    return body
