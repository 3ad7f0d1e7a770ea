"""The README's production quick start, run as written: the key and token files and the server
from its first block (in an empty folder, with `secretstore` on PATH the way the README puts
it there), the provisioning block, then the stripe-python block as the app's backend and as the
user session. It runs after test_readme.py, whose dev server has the port by then.
"""

import os
import signal
import stat
import subprocess
import time

import pytest

from conftest import block, sh

START = "umask 077"
PROVISION = "export SECRETSTORE_ADMIN_TOKEN="
PYTHON = "import os"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("production")


@pytest.fixture(scope="module")
def server(folder, cargo_installed):
    """The start block: every line but the last as a script, the last (the server) in the
    background, as a person would leave it running in one terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETSTORE_")}
    env["PATH"] = f"{cargo_installed}:{env['PATH']}"
    lines = block("sh", START).strip().splitlines()
    setup, serve = "\n".join(lines[:-1]), lines[-1]
    subprocess.run(["bash", "-euo", "pipefail", "-c", setup], cwd=folder, env=env, check=True)
    out, err = folder / "server.out", folder / "server.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(["bash", "-c", serve], cwd=folder, env=env, stdout=stdout,
                                stderr=stderr, start_new_session=True)
    deadline = time.monotonic() + 60
    while "admin listening on" not in out.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the production server did not start:\n{err.read_text()}")
        time.sleep(0.1)
    yield {"out": out.read_text(), "env": env}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def test_the_files_are_owner_only_and_the_server_listens_on_both_ports(server, folder):
    for name in ("root.key", "admin.token"):
        mode = stat.S_IMODE((folder / name).stat().st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"
    assert "secretstore listening on http://127.0.0.1:12111" in server["out"]
    assert "secretstore admin listening on http://127.0.0.1:12112" in server["out"]


@pytest.fixture(scope="module")
def provisioned(server, folder):
    out = sh(
        block("sh", PROVISION) + '\necho "APP_KEY=$APP_KEY"\necho "SESSION_KEY=$SESSION_KEY"\n',
        env=server["env"],
        cwd=folder,
    )
    found = dict(line.split("=", 1) for line in out.splitlines() if line.startswith(("APP_KEY=", "SESSION_KEY=")))
    return found


def test_provisioning_prints_each_secret_alone(provisioned):
    assert provisioned["APP_KEY"].startswith("sk_test_") and len(provisioned["APP_KEY"]) >= 48
    assert provisioned["SESSION_KEY"].startswith("ek_test_")


def test_the_backend_and_the_user_session(server, provisioned):
    python = os.path.join(os.path.dirname(__file__), "..", "..", "target", "sdk", "venv", "bin", "python")
    result = subprocess.run(
        [python, "-c", block("python", PYTHON)],
        env=dict(server["env"], **provisioned),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tok_crm_123"
