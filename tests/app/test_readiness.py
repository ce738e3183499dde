"""`/readyz` separates "cannot watch" (503: the model, the database, a loop) from "watching, degraded"
(200, `status: degraded`, the reason named): an output that cannot deliver, config.toml deleted or
replaced by a link loop, rules files that were rejected. Through the running service."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from support.helpers import REPO, get_json, wait_for
from support.service import Running, write_site

from streamwatch.config import load_settings


def test_a_config_gone_and_rejected_rules_are_degraded_with_their_reason(tmp_path: Path) -> None:
    config = write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), None)
    settings = load_settings(config)
    url = f"http://127.0.0.1:{settings.web.port}/readyz"

    def ready() -> tuple[int, dict[str, Any]]:
        return get_json(url)

    running = Running(settings)
    original = config.read_bytes()
    try:
        wait_for(lambda: ready()[1]["status"] == "ok", 30, "ready")
        assert ready()[0] == 200 and ready()[1]["degraded"] == []

        config.unlink()  # deleted while running: the next start would fail, so say so now
        wait_for(lambda: "config" in ready()[1]["degraded"], 30, "readiness to notice config.toml is gone")
        status, body = ready()
        assert status == 200 and body["status"] == "degraded" and body["ready"] is True
        assert "No such file" in body["reasons"]["config"] and "next start would fail" in body["reasons"]["config"]

        config.write_bytes(original)
        wait_for(lambda: ready()[1]["status"] == "ok", 30, "config.toml back")

        config.unlink()
        os.symlink(config.name, config)  # a link to itself: a loop
        wait_for(lambda: "config" in ready()[1]["degraded"], 30, "readiness to notice the link loop")
        assert "Too many levels of symbolic links" in ready()[1]["reasons"]["config"]
        config.unlink()
        config.write_bytes(original)
        wait_for(lambda: ready()[1]["status"] == "ok", 30, "config.toml back after the loop")

        broken = tmp_path / "rules" / "extra.toml"
        rule = '[[rules]]\nid = "Bad Id"\ntitle = "t"\nquestion = "Is it? Answer yes or no."\n'
        broken.write_text(rule, encoding="utf-8")
        wait_for(lambda: "rules" in ready()[1]["degraded"], 30, "readiness to name the rejected rules file")
        status, body = ready()
        assert status == 200 and "extra.toml" in body["reasons"]["rules"] and "extra.toml:2" in body["reasons"]["rules"]
        broken.unlink()
        wait_for(lambda: ready()[1]["status"] == "ok", 30, "the rejected file removed")
    finally:
        running.stop()
