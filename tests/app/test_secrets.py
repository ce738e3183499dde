"""Passwords never show: not in logs, camera status (API, page, MQTT), probe or check output, whatever
characters they hold, percent-encoded or not. Redaction works from what the user gave (the URL as
written, the configured secrets), not from a pattern on the output."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support.helpers import REPO, free_port, wait_for

from streamwatch.config import CameraConfig, MqttConfig
from streamwatch.ingest.camera import CameraWorker
from streamwatch.logs import FORMAT
from streamwatch.outputs.mqtt.topics import Topics
from streamwatch.redact import SECRETS, RedactingFormatter, display_url, redact_url, scrub

PASSWORDS = ["p#ss", "p?ss=1", "pa/ss", "pa ss", "pa'ss\"", "p@ss@", "p%40ss", "hunter2:with:colons", "ab"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_url_is_shown_with_its_password_masked_whatever_it_holds(password: str) -> None:
    url = f"rtsp://viewer:{password}@10.0.0.5:554/stream1?channel=2"
    shown = redact_url(url)
    assert shown == "rtsp://viewer:***@10.0.0.5:554/stream1?channel=2"
    text = f"cannot open {url}: Connection refused (the server said {password} is wrong)"
    if len(password) >= 3:  # registered secrets are masked in any text (very short ones only in URLs)
        assert password not in scrub(text)


def test_tokens_in_the_user_part_are_masked_too() -> None:
    assert display_url("https://ghp_token123@example.com/x.jpg") == "https://***@example.com/x.jpg"
    assert display_url("rtsp://10.0.0.5/stream") == "rtsp://10.0.0.5/stream"


def test_percent_encoded_and_decoded_forms_are_both_masked() -> None:
    SECRETS.add_url("rtsp://u:s%2Fcr%23t@cam/x")
    assert "s/cr#t" not in scrub("ffmpeg: auth failed for s/cr#t") and "***" in scrub("s%2Fcr%23t")


def test_the_log_formatter_masks_registered_secrets_in_messages_and_tracebacks() -> None:
    SECRETS.add("correct-horse-battery")
    formatter = RedactingFormatter(FORMAT)
    try:
        raise RuntimeError("login with correct-horse-battery failed")
    except RuntimeError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "password %s", ("correct-horse-battery",), sys.exc_info()
        )
    line = formatter.format(record)
    assert "correct-horse-battery" not in line and "Traceback" in line and "***" in line


@pytest.mark.parametrize("password", ["p#ss/w@rd", "a b?c", "x'y\"z"])
def test_camera_status_never_holds_the_password(password: str) -> None:
    port = free_port()  # nothing listens: the camera fails to connect and says why
    camera = CameraConfig(id="gate", url=f"rtsp://admin:{password}@127.0.0.1:{port}/live", open_timeout_s=2)
    worker = CameraWorker(camera)
    worker.start()
    try:
        wait_for(lambda: worker.status().last_error != "", 30, "the camera to report its error")
        status = worker.status()
    finally:
        worker.stop()
    assert status.url == f"rtsp://admin:***@127.0.0.1:{port}/live"
    message = Topics(MqttConfig()).status_message(status)  # what goes to MQTT, retained
    for shown in (json.dumps(status.as_dict()), message.payload.decode(), status.summary()):
        assert password not in shown


def test_the_cameras_api_and_page_never_show_the_password(tmp_path: Path) -> None:
    from support.web import Site

    from streamwatch.config import WebConfig
    from streamwatch.web.app import create_app

    site = Site(tmp_path)
    site.worker.stop()
    password = "s3c/ret#1?"
    site.worker = CameraWorker(
        CameraConfig(id="yard", url=f"rtsp://admin:{password}@127.0.0.1:{free_port()}/x", open_timeout_s=2)
    )
    site.worker.start()
    try:
        wait_for(lambda: site.worker.status().last_error != "", 30, "the camera error")
        with TestClient(create_app(site, WebConfig()), base_url="http://127.0.0.1:8080") as client:
            api = client.get("/api/cameras").text
            page = client.get("/cameras").text
        assert password not in api and password not in page and "admin:***@127.0.0.1" in page
    finally:
        site.close()


def streamwatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamwatch", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("password", ["p#ss/word", "with space", "q?x@y"])
def test_probe_never_prints_the_password(tmp_path: Path, password: str) -> None:
    url = f"rtsp://admin:{password}@127.0.0.1:{free_port()}/live"
    result = streamwatch("probe", url, "--seconds", "2", "--json", cwd=tmp_path)
    assert result.returncode == 1 and password not in result.stdout + result.stderr
    assert json.loads(result.stdout)[0]["url"].startswith("rtsp://admin:***@127.0.0.1:")


@pytest.mark.parametrize(
    "url", ["ftp://admin:hunter2/x@cam/live", "rtsp://admin:hunter2@cam:99999/x", "rtsp://admin:hunter2@/x"]
)
def test_probe_refuses_bad_urls_without_a_traceback(tmp_path: Path, url: str) -> None:
    result = streamwatch("probe", url, "--seconds", "1", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "hunter2" not in result.stderr
    assert result.stderr.startswith("error: ") and ":***@" in result.stderr


def test_the_service_log_never_holds_a_camera_password(tmp_path: Path) -> None:
    password = "pa/ss#word?1"
    config = tmp_path / "config.toml"
    config.write_text(
        f'rules_dir = "{REPO / "rules"}"\n[model]\nid = "{REPO / "models" / "demo-glm4v"}"\n'
        f'[[cameras]]\nid = "gate"\nurl = "rtsp://admin:{password}@127.0.0.1:{free_port()}/live"\n'
        'open_timeout_s = 2\ntags = ["perimeter"]\n[mqtt]\nenabled = false\n[web]\nenabled = false\n'
        f'[storage]\ndatabase_url = "sqlite:///{tmp_path / "db.sqlite"}"\n'
    )
    result = streamwatch("run", "-c", str(config), "--duration", "6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "camera gate offline: cannot open rtsp://admin:***@127.0.0.1:" in result.stderr
    assert password not in result.stderr + result.stdout and "pa/ss" not in result.stderr
