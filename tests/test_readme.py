"""The README's two set-up commands, as a new user runs them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.DOTALL)
    assert block, "README must show the set-up commands in the Quick start section"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_shows_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    assert readme_commands() == ["make run", "make test"]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.MULTILINE)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make")
def test_make_run_from_a_fresh_clone(tmp_path: Path) -> None:
    """Fresh clone -> `make run`: installs into its own .venv and answers the rules with the shipped demo
    model on the three demo cameras."""
    clone = tmp_path / "streamwatch"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if "/.venv/" not in p)
    result = subprocess.run(
        ["make", "run", "RUN_ARGS=--duration 8"], cwd=clone, env=env, capture_output=True, text=True, timeout=1500
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for camera in ("yard", "aisle", "line"):
        assert f"camera {camera} online" in output
    assert "make-tiny" not in output  # the trained demo model is in the repository
    assert re.search(r"camera=yard rule=fence-climb answer='(yes|no)' p_yes=0\.\d+", output)
    assert "Traceback" not in output
