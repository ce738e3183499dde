"""The Grafana dashboard in deploy/grafana: well formed, and every metric it queries is one the running
service exposes (its type's sample names: counters `_total`, histograms `_bucket`/`_sum`/`_count`), the
GPU gauges that only CUDA machines expose aside."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from support.helpers import REPO, wait_for
from support.service import Running, write_site

from streamwatch.config import load_settings
from streamwatch.metrics import CUDA_ONLY

DASHBOARD = REPO / "deploy" / "grafana" / "streamwatch.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}


def exposed(text: str) -> set[str]:
    """Every sample name the exposition allows: each family's name with its type's suffixes."""
    names: set[str] = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
        stem = family.removesuffix("_total") if kind == "counter" else family
        names |= {stem + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return names | set(CUDA_ONLY)


def test_the_dashboard_queries_only_metrics_that_exist(tmp_path: Path) -> None:
    settings = load_settings(write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), None))
    running = Running(settings)
    try:
        wait_for(lambda: len(running.decisions) >= 2, 60, "decisions")
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.web.port}/metrics") as scrape:
            text = scrape.read().decode()
    finally:
        running.stop()
    known = exposed(text)
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bstreamwatch_[a-z_]+\b", expr)}
    assert used and used <= known, sorted(used - known)
    assert {"streamwatch_alert_events_total", "streamwatch_camera_up", "streamwatch_queue_depth"} <= used
    # well formed: unique panel ids, each target a refId, balanced brackets, declared variables only
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        assert [t["refId"] for t in panel["targets"]] == [chr(65 + k) for k in range(len(panel["targets"]))]
        assert panel["datasource"]["uid"] == "${datasource}"
    for expr in exprs:
        for opening, closing in ("()", "[]", "{}"):
            assert expr.count(opening) == expr.count(closing), expr
        assert set(re.findall(r"\$(\w+)", expr)) - {"__rate_interval"} <= variables, expr
