"""The linters, as part of the test command (so CI enforces them): ruff (pyflakes, bugbear,
import sorting, pyupgrade, no heavy import at module level where start-up time matters) and
import-linter's contracts (the layers of docs/architecture.md; Qt only in avstudio.gui; no
import cycle between the layers). Their settings are in pyproject.toml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # lint this tree, whatever is installed
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    r = _run("-m", "ruff", "check", "--no-cache", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_contracts_are_kept():
    r = _run("-c", "from importlinter.cli import lint_imports_command; lint_imports_command()", "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_start_up_imports_no_heavy_package():
    """The app's modules and the CLI's parser import none of the heavy packages: the app shows
    its first frame, and `avstudio --help` answers, before torch is loaded (ruff's TID253 checks
    each module's own imports; this checks what they pull in)."""
    heavy = ("torch", "torchaudio", "scipy", "mir_eval", "safetensors", "fluidsynth", "sounddevice")
    code = ("import sys; import avstudio.gui.main_window, avstudio.gui.app; from avstudio.cli import build_parser; "
            f"build_parser(); print([m for m in {heavy!r} if m in sys.modules])")
    r = _run("-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout
