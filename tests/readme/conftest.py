"""What the README tests share: the README's blocks, a shell that runs one, and `secretstore`
installed the way the README says (`cargo install --path crates/secretstore`), into a temporary
root instead of ~/.cargo, once for the whole run."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# A cold release build on a small machine takes minutes.
BUILD_TIMEOUT = 1800


def blocks():
    """(language, text) of every fenced block, in order."""
    found = re.findall(r"^```([A-Za-z]*)\n(.*?)^```$", README.read_text(), flags=re.S | re.M)
    return [(lang, text) for lang, text in found]


def block(lang, first_line):
    """The one block of this language whose first line starts with `first_line`."""
    matches = [t for lg, t in blocks() if lg == lang and t.startswith(first_line)]
    assert len(matches) == 1, f"expected one {lang} block starting {first_line!r}, found {len(matches)}"
    return matches[0]


def sh(script, env=None, cwd=ROOT, timeout=600):
    """Runs a block with bash, failing on the first command that fails; returns stdout."""
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{script}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def cargo_installed(tmp_path_factory):
    """`cargo install` of the README, into a temporary root instead of ~/.cargo."""
    root = tmp_path_factory.mktemp("cargo-root")
    sh(
        block("sh", "cargo install --path crates/secretstore"),
        env={"CARGO_INSTALL_ROOT": str(root), "CARGO_TARGET_DIR": str(ROOT / "target")},
        timeout=BUILD_TIMEOUT,
    )
    return root / "bin"


