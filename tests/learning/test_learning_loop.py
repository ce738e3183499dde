"""The learning loop end to end, small (the full run's numbers are in bench/learning-loop.md): the demo
model watching a camera through `streamwatch run`, a scripted operator reviewing alerts and answering
label requests through the REST API, `streamwatch eval`, its suggested threshold through the release
gate (`streamwatch release apply`) into the rule file and reloaded, `streamwatch model finetune
--from-reviews`, the adapter through the gate and swapped in without a restart, and the held-out boards
passing again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.helpers import REPO


@pytest.mark.slow
def test_the_whole_loop_runs_through_the_service_and_its_interfaces(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "streamwatch", "bench", "learning-loop", "--repo", str(REPO)]
    # enough training boards that the answered ones always give the 8 examples a fine-tune needs
    command += ["--train-good", "16", "--train-bridged", "14", "--held-good", "8", "--held-bridged", "6"]
    command += ["--steps", "10", "--interval", "0.3", "--work-dir", str(tmp_path / "site"), "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (report,) = json.loads((tmp_path / "learning-loop.json").read_text())["runs"]
    before, after = report["phases"]["before"], report["phases"]["after"]
    for phase in (before, after):
        assert (phase["good"], phase["bridged"]) == (8, 6)  # the same held-out boards, twice
    assert before["alerted_bridged"] >= 1 and after["alerted_bridged"] >= 1  # still watching after the swap
    reviewed, labelled = report["reviewed"], report["labelled"]
    assert reviewed["confirmed"] >= 1 and labelled["no"] >= 1  # the operator's answers, through the API
    assert report["eval"]["n"] == sum(reviewed.values()) + sum(labelled.values())  # eval saw every one
    gate = report["gates"]["adapter"]
    assert gate["outcome"] in ("passed", "refused") and gate["live"] == (gate["outcome"] == "passed")
    assert (gate["outcome"] == "refused") == bool(gate["refusals"])
    live = report["live_threshold"]
    assert f"threshold = {live}" in (tmp_path / "site" / "seed-0" / "rules" / "defect.toml").read_text()
    assert report["finetune"]["examples"] >= 8 and report["reloads"] == (1 if gate["live"] else 0)  # no restart
    versions = subprocess.run(
        [sys.executable, "-m", "streamwatch", "release", "list", "--json", "-c", "config.toml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path / "site" / "seed-0",
        check=True,
    )
    outcomes = [v["outcome"] for v in json.loads(versions.stdout)]
    assert outcomes[-1] == "not gated" and outcomes[0] == gate["outcome"]  # the baseline first, the adapter last
    log = (tmp_path / "site" / "seed-0" / "service.log").read_text()
    assert ("model reloaded" in log) == gate["live"] and "Traceback" not in log
    assert log.count("streamwatch running") == 1  # one service from start to end
    shown = (tmp_path / "learning-loop.md").read_text()
    assert f"| 0 | {before['alerted_good']}/8 (" in shown and "SeedSequence([2, seed])" in shown
