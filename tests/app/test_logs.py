"""Logs that help: the per-decision line is DEBUG, INFO carries a summary a minute; `log_format =
"json"` gives one JSON object a line with stable keys and the secrets masked."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from support.demo_site import demo_site
from support.helpers import REPO, free_port, wait_for
from support.service import Running, write_site

from streamwatch.app.housekeeping import Summary
from streamwatch.config import load_settings
from streamwatch.inference.lanes import QueueStats

SNIPPET = """
import logging
import os
from streamwatch.logs import setup_logging
from streamwatch.redact import SECRETS
SECRETS.add("hunter2-very-secret")
setup_logging("INFO", "json")
log = logging.getLogger("streamwatch.test")
log.info("connecting with %s to %s", "hunter2-very-secret", "broker")
log.debug("not shown")
try:
    raise ValueError("password hunter2-very-secret refused")
except ValueError:
    log.exception("it failed: \\"quoted\\" and ünïcode")
"""


def test_json_logs_are_one_object_a_line_with_the_secrets_masked() -> None:
    result = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [sorted(e) for e in entries] == [
        ["level", "logger", "message", "ts"],
        ["exception", *["level", "logger", "message", "ts"]],
    ]
    first, second = entries
    assert first["message"] == "connecting with *** to broker" and first["level"] == "INFO"
    assert first["logger"] == "streamwatch.test" and first["ts"].endswith("+00:00")
    assert second["message"] == 'it failed: "quoted" and ünïcode' and second["level"] == "ERROR"
    assert "ValueError: password *** refused" in second["exception"]
    assert "hunter2" not in result.stderr


def test_the_summary_line_counts_what_happened_since_the_last_one(caplog: pytest.LogCaptureFixture) -> None:
    counts = [10, 4, 1]
    stats = QueueStats(failed=1, dropped=Counter({"deadline": 2}))
    summary = Summary(lambda: (counts[0], counts[1], counts[2]), lambda: stats)
    counts[:] = [25, 9, 3]
    stats = QueueStats(failed=2, dropped=Counter({"deadline": 4, "full": 1}))
    caplog.set_level(logging.INFO, logger="streamwatch.app.housekeeping")
    import asyncio

    asyncio.run(summary.step())
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage().endswith(
        ": 15 decisions (10 asked the model, 5 reused), 4 requests dropped or failed, 2 alert events"
    )


def test_decisions_are_debug_lines_alerts_are_not(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    running = Running(load_settings(write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), None)))
    try:
        wait_for(lambda: any(d.transition == "open" for d in running.decisions), 60, "an alert")
    finally:
        running.stop()
    decisions = [r for r in caplog.records if r.getMessage().startswith("camera=gate rule=right-side answer=")]
    assert decisions and {r.levelno for r in decisions} == {logging.DEBUG}
    opened = [r for r in caplog.records if r.getMessage().startswith("alert open: camera=gate rule=right-side")]
    assert opened and opened[0].levelno == logging.INFO  # WARNING and ERROR mean something is wrong


def test_streamwatch_run_with_json_logs(tmp_path: Path) -> None:
    config, _store, _labels = demo_site(tmp_path)
    text = config.read_text(encoding="utf-8").replace('log_level = "INFO"', 'log_level = "INFO"\nlog_format = "json"')
    text = text.replace("[mqtt]\nenabled = true", "[mqtt]\nenabled = false").replace(
        "port = 8080", f"port = {free_port()}"
    )
    config.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "streamwatch", "run", "-c", str(config), "--duration", "6"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    others = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert not others, others  # every line is JSON (no progress bar of the model loading either)
    messages = [e["message"] for e in entries]
    assert any(m == "streamwatch running: 3 cameras" for m in messages), messages
    assert not any(m.startswith("camera=") for m in messages)  # decisions are DEBUG


@pytest.mark.parametrize(
    ("level", "log_format", "bars"),
    [("INFO", "text", False), ("WARNING", "text", False), ("DEBUG", "text", True), ("DEBUG", "json", False)],
)
def test_progress_bars_only_at_debug_in_text_logs(level: str, log_format: str, bars: bool) -> None:
    """A model's loading bar is not a log line: off at INFO and in JSON logs (set before or after
    transformers is imported: both are checked)."""
    script = (
        "import sys\n"
        "from streamwatch.logs import setup_logging\n"
        f"{'import transformers' if level == 'WARNING' else 'pass'}\n"
        f"setup_logging({level!r}, {log_format!r})\n"
        "from transformers.utils import logging\n"
        "print(logging.is_progress_bar_enabled())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == str(bars)
