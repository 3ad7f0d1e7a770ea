"""Fixtures for the end-to-end SDK tests (see harness.py for the server itself).

Every test module gets its own server (`server` fixture, module scope) on
127.0.0.1 with an OS-chosen port and a fresh temporary data directory. A module
may set `SERVER_ARGS = [...]` to pass extra flags to `secretstore serve`.
"""

from pathlib import Path
from typing import List, Optional

import pytest
import stripe

from harness import Server


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    """A running server for this module; `stripe.api_base` points at it."""
    root = tmp_path_factory.mktemp(request.module.__name__.split(".")[-1])
    srv = Server(
        root / "data",
        root / "server.log",
        extra_args=getattr(request.module, "SERVER_ARGS", []),
    ).start()
    saved = (stripe.api_base, stripe.api_key, stripe.max_network_retries)
    stripe.api_base = srv.url
    stripe.api_key = "sk_test_pysdk"
    stripe.max_network_retries = 0
    yield srv
    stripe.api_base, stripe.api_key, stripe.max_network_retries = saved
    if srv.alive():
        code = srv.stop()
        assert code == 0, f"server exited with {code} on SIGTERM\n{srv.log_tail()}"


@pytest.fixture
def new_server(tmp_path):
    """Starts extra servers inside one test; stops whatever is left at the end."""
    started: List[Server] = []

    def start(data_dir: Optional[Path] = None, **kwargs) -> Server:
        srv = Server(
            data_dir or tmp_path / "data",
            tmp_path / f"server{len(started)}.log",
            **kwargs,
        ).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.kill()
