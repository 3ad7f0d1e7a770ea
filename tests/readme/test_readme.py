"""Every snippet of README.md, run as it is written.

The README is the front door: a new user pastes its blocks in order. This suite does the same
on this checkout: it starts the server with the README's own command (`cargo run --release --
serve --dev`, so the build is part of the check), puts `secretstore` on PATH the way the README
says (`cargo install --path crates/secretstore`, into a temporary root), then runs each block
against that server: the curl calls, the Python and Node examples, the command-line examples,
the Rust example (compiled from crates/secretstore-client/examples/readme.rs, which must match
the README word for word) and the benchmark. The only changes to the environment are ones a
user would not see: the data directory and install root are temporary
(SECRETSTORE_DATA, CARGO_INSTALL_ROOT), and the benchmark runs 1 s a scenario in two rounds
(DURATION, ROUNDS) with a memory run of 500 of the largest secrets instead of 20,000
(MEMORY_SECRETS).

Every fenced block must be claimed by one of the handlers below, so a snippet added to the
README without a test fails `test_every_block_is_run`.
"""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
NODE_DIR = ROOT / "tests" / "sdk" / "node"
EXAMPLE = ROOT / "crates" / "secretstore-client" / "examples" / "readme.rs"
ADDR = ("127.0.0.1", 12111)


from conftest import BUILD_TIMEOUT, block, blocks, sh  # noqa: E402


# Each block's handler, by language and first line. A block may be claimed as run elsewhere only
# where scripts/test runs exactly that command itself.
CLAIMS = [
    ("sh", "cargo run --release -- serve --dev", "test_the_start_command_serves_and_prints_a_first_call"),
    ("sh", "curl -u sk_test_myapp:", "test_the_curl_calls"),
    ("sh", "cargo install --path crates/secretstore", "test_cargo_install_puts_secretstore_on_path"),
    ("sh", "scripts/test", "this suite's own runner: scripts/test runs every suite, this one included"),
    ("python", "import stripe", "test_the_python_example"),
    ("js", "import Stripe from 'stripe';", "test_the_node_example"),
    ("sh", "scripts/reliability", "test_scripts_test_runs_the_reliability_command"),
    ("sh", "scripts/bench", "test_the_benchmark"),
    ("text", "crates/", "a directory listing, not a command"),
    ("rust", "use secretstore_client::", "test_the_rust_example"),
    ("sh", "export SECRETSTORE_API_KEY=", "test_the_command_line_examples"),
    ("sh", "umask 077", "test_readme_production.py: the production server's start"),
    ("sh", "export SECRETSTORE_ADMIN_TOKEN=", "test_readme_production.py: provisioning"),
    ("python", "import os", "test_readme_production.py: the app backend and the user session"),
]


def test_every_block_is_run():
    for lang, text in blocks():
        first = text.splitlines()[0] if text else ""
        claimed = [c for c in CLAIMS if c[0] == lang and first.startswith(c[1])]
        assert len(claimed) == 1, f"README block ({lang}) starting {first!r} is not run by any test"
        handler = claimed[0][2]
        if handler.startswith("test_readme_production.py"):
            assert (Path(__file__).parent / "test_readme_production.py").exists()
        elif handler.startswith("test_"):
            assert handler in globals(), handler


def port_free():
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(ADDR)
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(scope="module")
def installed(cargo_installed):
    return cargo_installed


@pytest.fixture(scope="module")
def server(tmp):
    """The README's start command, run verbatim from the clone's root."""
    assert port_free(), f"{ADDR[0]}:{ADDR[1]} is taken; the README's server needs it"
    command = block("sh", "cargo run --release -- serve --dev").strip()
    out = tmp / "server.out"
    err = tmp / "server.err"
    env = dict(os.environ, SECRETSTORE_DATA=str(tmp / "data"))
    for var in ("SECRETSTORE_LISTEN", "SECRETSTORE_ROOT_KEY", "SECRETSTORE_ROOT_KEY_FILE"):
        env.pop(var, None)
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            ["bash", "-c", command], cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
    deadline = time.monotonic() + BUILD_TIMEOUT
    while "listening on" not in out.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the start command did not start a server:\n{err.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)
    # The banner comes right after the first line.
    time.sleep(0.5)
    yield {"banner": out.read_text(), "proc": proc}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_the_start_command_serves_and_prints_a_first_call(server):
    banner = server["banner"]
    assert banner.startswith("secretstore listening on http://127.0.0.1:12111\n"), banner
    assert "DEV MODE" in banner
    # The banner's first call is the README's.
    for line in block("sh", "curl -u sk_test_myapp:").replace("\\\n", " ").splitlines():
        words = " ".join(line.split())
        assert words in " ".join(banner.split()), f"{words!r} not in the banner:\n{banner}"


def test_the_curl_calls(server):
    out = sh(block("sh", "curl -u sk_test_myapp:"))
    assert '"name":"my-api-key"' in out, out
    assert '"payload":"s3cr3t"' in out, out


def test_cargo_install_puts_secretstore_on_path(installed):
    assert (installed / "secretstore").is_file()
    assert "secrets" in sh("secretstore --help", env={"PATH": f"{installed}:{os.environ['PATH']}"})


def test_the_python_example(server):
    python = ROOT / "target" / "sdk" / "venv" / "bin" / "python"
    result = subprocess.run([str(python), "-c", block("python", "import stripe")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ghp_...", result.stdout


def test_the_node_example(server):
    # An ES module evaluated where stripe-node is installed, as the README's `.mjs` file would be.
    result = subprocess.run(
        ["node", "--input-type=module"],
        input=block("js", "import Stripe from 'stripe';"),
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "s3cr3t", result.stdout


def test_the_command_line_examples(server, installed):
    out = sh(
        block("sh", "export SECRETSTORE_API_KEY="),
        env={"PATH": f"{installed}:{os.environ['PATH']}", "GITHUB_TOKEN": "ghp_readme_cli"},
    )
    assert "ghp_readme_cli" in out, out  # find --reveal
    assert '"object": "list"' in out or '"object":"list"' in out, out  # list --json


def marked_regions(text):
    """The lines between `// README: begin` and `// README: end`, each region dedented."""
    regions, current = [], None
    for line in text.splitlines():
        marker = line.strip()
        if marker == "// README: begin":
            current = []
        elif marker == "// README: end":
            indent = min(len(l) - len(l.lstrip()) for l in current if l.strip())
            regions.append("\n".join(l[indent:] for l in current))
            current = None
        elif current is not None:
            current.append(line)
    return regions


def test_the_rust_example(server):
    example = "\n\n".join(marked_regions(EXAMPLE.read_text())) + "\n"
    assert example == block("rust", "use secretstore_client::"), (
        f"{EXAMPLE.relative_to(ROOT)} and the README's rust block differ; keep them word for word equal"
    )
    out = sh("cargo run -q -p secretstore-client --example readme", timeout=BUILD_TIMEOUT)
    assert "found github-token with its payload" in out, out


def test_scripts_test_runs_the_reliability_command():
    command = block("sh", "scripts/reliability").strip()
    runner = (ROOT / "scripts" / "test").read_text()
    assert re.search(rf'^run "reliability" .* {re.escape(command)}$', runner, flags=re.M), (
        f"scripts/test does not run the README's `{command}`"
    )


def test_the_benchmark(server):
    # One second a scenario, two rounds (the second one backward): this checks the command
    # works and prints its table, not the figures.
    env = {"DURATION": "1", "WARMUP": "1", "ROUNDS": "2", "MEMORY_SECRETS": "500"}
    out = sh(block("sh", "scripts/bench"), env=env, timeout=BUILD_TIMEOUT)
    assert "==> results" in out, out[-3000:]
    for scenario in ("ceiling", "find", "list", "set", "find-prod", "set-prod"):
        assert re.search(rf"^{scenario}\s+\d+", out, flags=re.M), f"no {scenario} row:\n{out[-3000:]}"
    assert re.search(r"^limiter: \d+ distinct credentials", out, flags=re.M), out[-3000:]
    assert re.search(r"^memory: 500 secrets .* at most \(limit 256 MiB\).*: PASS$", out, flags=re.M), out[-3000:]


def test_the_profile(server):
    # The README names `scripts/profile` in its text: one second of finds and of creates
    # checks that it runs and that each figure it prints comes from the run (a thread that
    # worked, bytes that reached the disk, commits that happened), not what they are.
    env = {"DURATION": "1", "WARMUP": "0"}
    for op in ("find", "create"):
        out = sh(f"scripts/profile {op}", env=env, timeout=BUILD_TIMEOUT)
        names = ", 1000 names" if op == "find" else ""
        assert re.search(rf"^{op}, 32 connections, 1 s{names}: [1-9]\d* requests$", out, flags=re.M), out
        assert re.search(r"^  req/s [\d.]+, p50 \S+, p99 \S+$", out, flags=re.M), out
        workers = re.search(r"^    async workers +([\d.]+) us$", out, flags=re.M)
        writer = re.search(r"^    sqlite writer +([\d.]+) us$", out, flags=re.M)
        assert workers and float(workers.group(1)) > 0, out
        # Every find appends an audit record, every create a secret: both go through the writer.
        assert writer and float(writer.group(1)) > 0, out
        stored = re.search(r"^  bytes written per request +(\d+) to storage", out, flags=re.M)
        assert stored and int(stored.group(1)) > 0, out
        assert re.search(r"^  writer jobs per commit +[\d.]+ \([1-9]\d* commits\)$", out, flags=re.M), out


    # SECRETS sets that many names before the finds (the script stops if one is missing); with
    # the read cache off every find is a look-up on a SQLite reader thread, whose CPU shows.
    env = {"DURATION": "1", "WARMUP": "0", "SECRETS": "2500", "SERVER_ARGS": "--cache-bytes 0"}
    out = sh("scripts/profile find", env=env, timeout=BUILD_TIMEOUT)
    assert re.search(r"^find, 32 connections, 1 s, 2500 names: [1-9]\d* requests$", out, flags=re.M), out
    readers = re.search(r"^    sqlite readers +([\d.]+) us$", out, flags=re.M)
    assert readers and float(readers.group(1)) > 0, out
