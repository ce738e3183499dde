"""The README's two set-up commands, as a new user runs them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.helpers import REPO


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
    model on the three demo cameras (each decision is a DEBUG line: RUN_ARGS asks for them)."""
    clone = tmp_path / "streamwatch"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if "/.venv/" not in p)
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:  # runs until stopped, as a user runs it; stopped with SIGTERM once it answered
        make = subprocess.Popen(
            ["make", "run", "RUN_ARGS=--log-level DEBUG"],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    answered = re.compile(r"camera=yard rule=fence-climb answer='(yes|no)' p_yes=[01]\.\d+")

    def done() -> bool:
        text = log.read_text(errors="replace")
        return bool(answered.search(text)) and all(f"camera {c} online" in text for c in ("yard", "aisle", "line"))

    try:
        deadline = time.monotonic() + 1500  # a fresh install first
        while not done():
            assert make.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "no answer from `make run`"
            time.sleep(1)
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(120)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
    output = log.read_text(errors="replace")
    assert "streamwatch stopped after" in output, output[-4000:]  # a clean stop on SIGTERM
    for camera in ("yard", "aisle", "line"):
        assert f"camera {camera} online" in output
    assert "make-tiny" not in output  # the trained demo model is in the repository
    assert "Traceback" not in output
