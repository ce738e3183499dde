"""`streamwatch bench ingest` end to end at a small size: the harness runs, measures and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_ingest_writes_a_report_comparing_decode_modes(tmp_path: Path) -> None:
    args = [
        "--cameras",
        "2",
        "--modes",
        "keyframes,all",
        "--seconds",
        "4",
        "--warmup",
        "1",
        "--width",
        "320",
        "--height",
        "180",
        "--fps",
        "10",
        "--gop",
        "10",
        "--bitrate",
        "300000",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "streamwatch", "bench", "ingest", *args], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "ingest.json").read_text())
    keyframes, full = report["runs"]
    assert (keyframes["mode"], full["mode"]) == ("keyframes", "all")
    for run in (keyframes, full):  # what was measured is reported; how fast a busy machine was is not tested
        assert run["online"] == 2 and run["missed_samples"] >= 0 and isinstance(run["keeps_up"], bool)
        assert run["samples"] >= 1 and run["cores_used"] > 0 and run["rss_peak_mb"] > 0 and run["decode_ms"] > 0
        assert 0 < run["sample_age_p50_ms"] <= run["sample_age_p95_ms"]
    assert 0 < keyframes["decoded_fps_per_camera"] < 2  # at most the stream's one keyframe per second
    assert full["decoded_fps_per_camera"] > keyframes["decoded_fps_per_camera"]  # every frame, not one in ten
    markdown = (tmp_path / "ingest.md").read_text()
    assert "| keyframes | 2 | 2 |" in markdown and "**Target**" in markdown
    assert (tmp_path / "ingest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["machine"]["cores"] >= 1 and report["config"]["width"] == 320
