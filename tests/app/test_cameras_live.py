"""config.toml's cameras edited while `streamwatch run` runs, on GStreamer's RTSP server: a camera added
starts, one removed stops and its open alert resolves, one changed restarts, the others keep running
untouched; an invalid edit is refused with its file:line problems (readiness says so) and the running
cameras stay; another section's change says a restart is needed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support.helpers import get_json, wait_for
from support.service import Running, write_site

from streamwatch.config import load_settings
from streamwatch.store.db import Database
from streamwatch.store.events import EventFilter, EventStore
from streamwatch.tools.bench.rtsp import RtspServer

CAMERA = """
[[cameras]]
id = "{id}"
url = "{url}"
sample_interval_s = 1
tags = ["perimeter"]
location = "the fence"
"""


def test_cameras_follow_config_edits_while_running(
    tmp_path: Path, rtsp_server: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = write_site(tmp_path, rtsp_server.url("/cam"), None)
    base = config.read_text(encoding="utf-8")
    config.write_text(base + CAMERA.format(id="dock", url=rtsp_server.url("/cam")), encoding="utf-8")
    settings = load_settings(config)
    running = Running(settings)
    ready = f"http://127.0.0.1:{settings.web.port}/readyz"
    store = EventStore(Database.open(settings.database_url()), tmp_path / "data" / "snapshots")
    try:
        cameras = running.service.cameras.workers
        wait_for(lambda: all(w.status().state == "online" for w in cameras.values()), 120, "both cameras online")
        wait_for(lambda: store.count(EventFilter(camera="dock", kind="open")) >= 1, 120, "an alert on dock")
        gate = cameras["gate"]
        frames = gate.status().frames

        # dock goes, yard comes: gate is not touched
        config.write_text(base + CAMERA.format(id="yard", url=rtsp_server.url("/small")), encoding="utf-8")
        wait_for(lambda: set(cameras) == {"gate", "yard"}, 120, "the edit applied")
        mark = len(running.decisions)
        wait_for(lambda: cameras["yard"].status().state == "online", 120, "the new camera online")
        assert cameras["gate"] is gate and gate.status().frames > frames  # the same worker, still delivering
        wait_for(lambda: store.count(EventFilter(camera="dock", kind="resolved")) >= 1, 120, "dock's alert resolved")
        assert "cameras changed: added ['yard'], removed ['dock'], restarted []" in caplog.text
        wait_for(lambda: any(d.camera.id == "yard" for d in running.decisions[mark:]), 120, "yard's decisions")
        assert "dock" not in {d.camera.id for d in running.decisions[mark:]}

        # an invalid edit: refused with file:line, the running cameras stay, readiness says why
        broken = base + CAMERA.format(id="yard", url=rtsp_server.url("/small")) + '\n[[cameras]]\nid = "Bad Id"\n'
        config.write_text(broken, encoding="utf-8")
        wait_for(lambda: "config" in get_json(ready)[1]["degraded"], 120, "readiness to say the edit is not applied")
        status, body = get_json(ready)  # still watching: degraded, not "not ready"
        assert status == 200 and body["status"] == "degraded"
        assert "config.toml changed and is not applied" in body["reasons"]["config"]
        assert "config.toml:" in caplog.text and "cameras[2].id" in caplog.text
        assert set(cameras) == {"gate", "yard"} and cameras["gate"] is gate

        # a changed camera restarts; another section's change needs a restart, said once
        yard = cameras["yard"]
        edited = base.replace("[web]\n", "[web]\nsession_hours = 2\n")
        config.write_text(edited + CAMERA.format(id="yard", url=rtsp_server.url("/cam")), encoding="utf-8")
        wait_for(lambda: cameras.get("yard") is not yard, 120, "yard restarted on its new URL")
        wait_for(lambda: get_json(ready)[1]["status"] == "ok", 120, "ready again")
        assert cameras["gate"] is gate and "restarted ['yard']" in caplog.text
        assert "config.toml: web changed: restart streamwatch to apply it" in caplog.text
    finally:
        running.stop()
