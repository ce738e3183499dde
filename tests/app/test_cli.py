"""The command line as users run it: `python -m streamwatch ...` in a demo folder."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.events import new_event
from support.helpers import REPO, free_port, random_image, wait_for

from streamwatch.config.passwords import hash_secret

# the line of [web] host in the shipped config.toml
WEB_HOST_LINE = next(
    number
    for number, line in enumerate((REPO / "config.toml").read_text().splitlines(), 1)
    if line.startswith('host = "127.0.0.1"')
)


def streamwatch(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamwatch", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A copy of the shipped config, rules and sample clips, with the shipped demo model in place."""
    config = (REPO / "config.toml").read_text().replace("port = 8080", f"port = {free_port()}")
    (tmp_path / "config.toml").write_text(config)
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    shutil.copytree(REPO / "samples", tmp_path / "samples")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "demo-glm4v").symlink_to(REPO / "models" / "demo-glm4v")
    return tmp_path


def test_check_accepts_the_shipped_config(demo: Path) -> None:
    result = streamwatch("check", "-c", "config.toml", cwd=demo)
    assert result.returncode == 0, result.stderr
    assert "config.toml: OK: 3 cameras, 19 rules" in result.stdout


def test_check_reports_broken_rules_and_config(demo: Path) -> None:
    (demo / "rules" / "perimeter.toml").write_text('[[rules]]\nid = "x"\ntitle = "t"\nquestion = "q {where}"\n')
    result = streamwatch("check", "-c", "config.toml", cwd=demo)
    assert result.returncode == 2
    assert "perimeter.toml:4: rules[0].question: unknown template variable {where}" in result.stderr
    (demo / "config.toml").write_text("[model]\nmax_batch = -1\n")
    result = streamwatch("check", "-c", "config.toml", cwd=demo)
    assert result.returncode == 2
    assert "config.toml:2: model.max_batch: Input should be greater than or equal to 1" in result.stderr


def test_ask_about_an_image_prints_answer_confidence_and_latency(demo: Path) -> None:
    random_image(5).save(demo / "frame.jpg")
    result = streamwatch("ask", "frame.jpg", "Is any person climbing the fence? Answer yes or no.", cwd=demo)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.strip().splitlines())
    assert lines["answer"].strip() in ("yes", "no")
    assert 0 <= float(lines["confidence"].split()[0]) <= 1
    assert lines["latency"].strip().endswith("ms")


def test_ask_grabs_a_frame_from_a_video_and_answers_in_json(demo: Path) -> None:
    result = streamwatch("ask", "samples/yard.mp4", "Describe the scene.", "--kind", "text", "--json", cwd=demo)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"answer", "confidence", "latency_ms", "model"}
    assert answer["confidence"] is None and isinstance(answer["answer"], str)


def test_ask_with_an_explicit_model_needs_no_config(tmp_path: Path, tiny_qwen2vl: Path) -> None:
    random_image(2).save(tmp_path / "f.png")
    result = streamwatch("ask", "f.png", "Is it day?", "--model", str(tiny_qwen2vl), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == str(tiny_qwen2vl)


def test_ask_with_another_model_leaves_the_configs_adapter_out(tmp_path: Path, tiny_qwen2vl: Path) -> None:
    """The config's adapter belongs to the config's model: `--model` asks the other model alone."""
    random_image(2).save(tmp_path / "f.png")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "base_model_name_or_path": "elsewhere"}')
    (tmp_path / "config.toml").write_text('[model]\nid = "org/configured"\nadapter = "adapter"\n')
    result = streamwatch("ask", "f.png", "Is it day?", "--model", str(tiny_qwen2vl), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == str(tiny_qwen2vl)


@pytest.mark.parametrize(
    ("source", "message"),
    [("missing.jpg", "missing.jpg: file not found"), ("not-an-image.png", "not a readable image")],
)
def test_ask_with_bad_input_says_what_is_wrong(demo: Path, source: str, message: str) -> None:
    (demo / "not-an-image.png").write_text("hello")
    result = streamwatch("ask", source, "Is it day?", cwd=demo)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_make_tiny_builds_a_loadable_model(tmp_path: Path) -> None:
    result = streamwatch("model", "make-tiny", "m", "--family", "qwen2_vl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "random weights" in result.stdout
    assert (tmp_path / "m" / "model.safetensors").is_file()
    again = streamwatch("model", "make-tiny", "m", cwd=tmp_path)
    assert "already holds a model" in again.stdout


def test_run_answers_every_rule_of_the_demo_cameras(demo: Path) -> None:
    """Waits for every pair to be answered (however long a busy machine takes), then stops it with SIGTERM."""
    pairs = [
        ("yard", "fence-climb"),
        ("yard", "crowding"),
        ("aisle", "shelf-fill"),
        ("aisle", "forklift-blocking-aisle"),
        ("line", "solder-bridge"),
    ]
    log_file = demo / "run.log"
    with log_file.open("wb") as log_out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamwatch", "run", "-c", "config.toml", "--log-level", "DEBUG"],  # decisions
            cwd=demo,
            stdout=log_out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: all(f"camera={c} rule={r} " in log_file.read_text() for c, r in pairs),
            240,
            "an answer for every camera x rule pair",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(120) == 0
    finally:
        process.kill()
    log = log_file.read_text()
    for camera in ("yard", "aisle", "line"):
        assert f"camera {camera} online: 640x360 h264" in log
    assert "camera=yard rule=solder-bridge" not in log  # defect rules do not apply to a perimeter camera
    decisions = int(log.rsplit("stopped after ", 1)[1].split()[0])
    assert decisions >= len(pairs)
    assert "batch=" in log and "Traceback" not in log


def test_ask_grabs_a_frame_from_an_rtsp_camera(demo: Path, rtsp_url: str) -> None:
    result = streamwatch("ask", rtsp_url, "Is any person climbing the fence? Answer yes or no.", "--json", cwd=demo)
    assert result.returncode == 0, result.stderr
    assert 0 < json.loads(result.stdout)["confidence"] < 1


def test_rtsp_errors_are_clear_and_never_show_the_password(demo: Path, rtsp_url: str) -> None:
    bad_path = rtsp_url.replace("rtsp://", "rtsp://viewer:hunter2@").replace("/cam", "/nope")
    result = streamwatch("ask", bad_path, "Is it day?", cwd=demo)
    assert result.returncode == 2
    assert "404 Not Found" in result.stderr and "viewer:***@" in result.stderr
    assert "hunter2" not in result.stderr
    refused = streamwatch("ask", f"rtsp://127.0.0.1:{free_port()}/cam", "Is it day?", cwd=demo)
    assert refused.returncode == 2 and "Connection refused" in refused.stderr


def test_probe_reports_each_camera_and_fails_when_one_is_down(demo: Path, rtsp_url: str) -> None:
    broken = rtsp_url.replace("rtsp://", "rtsp://admin:hunter2@").replace("/cam", "/missing")
    result = streamwatch("probe", rtsp_url, broken, "--seconds", "3", "--json", cwd=demo)
    assert result.returncode == 1, result.stderr
    good, bad = json.loads(result.stdout)
    assert good["state"] == "online" and good["width"] == 640 and good["decoder"] == "h264"
    assert good["decode_mode"] == "keyframes" and good["keyframe_interval_s"] == 1.0
    assert bad["state"] == "offline" and "404 Not Found" in bad["last_error"]
    assert "hunter2" not in result.stdout + result.stderr


def test_probe_checks_the_cameras_of_the_config(demo: Path) -> None:
    result = streamwatch("probe", "--seconds", "2", cwd=demo)
    assert result.returncode == 0, result.stderr
    clip = demo / "samples" / "yard.mp4"  # files are relative to the config: shown resolved
    assert f"yard  {clip}\n  state online, quality good" in result.stdout and "640x360 h264" in result.stdout


def test_events_lists_filters_and_shows_history(demo: Path) -> None:

    from streamwatch.store.db import Database
    from streamwatch.store.events import EventStore

    store = EventStore(Database.open(f"sqlite:///{demo / 'data' / 'streamwatch.db'}"), demo / "data" / "snapshots")
    for uid, camera, kind in (("a1", "yard", "open"), ("a2", "yard", "resolved"), ("b1", "dock", "open")):
        alert_id = "a1" if camera == "yard" else uid
        event = new_event(uid, alert_id=alert_id, kind=kind, camera=camera, rule="fence-climb", confidence=0.9)
        store.record(event, b"\xff\xd8jpeg" if uid == "a1" else None)
    table = streamwatch("events", "--camera", "yard", cwd=demo)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 2 and "resolved" in lines[0] and "yard/fence-climb" in lines[0] and "a2" in lines[0]
    listed = json.loads(streamwatch("events", "--kind", "open", "--since", "1h", "--json", cwd=demo).stdout)
    assert [e["event_id"] for e in listed] == ["b1", "a1"]
    shown = json.loads(streamwatch("events", "a1", cwd=demo).stdout)
    assert shown["type"] == "open" and Path(shown["snapshot_file"]).read_bytes() == b"\xff\xd8jpeg"
    assert streamwatch("events", "nope", cwd=demo).returncode == 1
    bad = streamwatch("events", "--since", "yesterday", cwd=demo)
    assert bad.returncode == 2 and "expected e.g. 90m, 2h, 7d" in bad.stderr
    far = streamwatch("events", "--since", "999999999d", cwd=demo)
    assert far.returncode == 2 and "reaches back before the year 1" in far.stderr and "Traceback" not in far.stderr


def test_run_with_the_web_port_taken_says_so_and_exits(demo: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = demo / "config.toml"
        text = config.read_text()
        config.write_text(text[: text.index("port = ", text.index("[web]"))] + f"port = {port}\n")
        result = streamwatch("run", "-c", "config.toml", "--duration", "5", cwd=demo)
    assert result.returncode == 2
    assert f"web: cannot listen on 127.0.0.1:{port} (Address already in use)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: (d / "config.toml").write_text(
                (d / "config.toml").read_text() + "x = " + "[" * 3000 + "]" * 3000
            ),
            "arrays or inline tables are nested more than 16 deep",
        ),
        (
            lambda d: (d / "config.toml").write_text("[" + ".".join(["a"] * 5000) + "]\n"),
            "config.toml:1: a dotted key or table name has more than 16 parts",
        ),
        (lambda d: (d / "rules" / "loop.toml").symlink_to(d / "rules" / "loop.toml"), "loop.toml: cannot read: "),
        (
            lambda d: (d / "rules" / "nested.toml").write_text("[[rules]]\ncameras = " + "[" * 2000 + "]" * 2000),
            "nested.toml:2: arrays or inline tables are nested",
        ),
        (lambda d: shutil.rmtree(d / "rules"), "config.toml:5: rules_dir: the rules folder"),
        (
            lambda d: (d / "config.toml").write_text(
                (d / "config.toml")
                .read_text()
                .replace(
                    'host = "127.0.0.1"\nport',
                    f'password_hash = "{hash_secret("a password")}"\nhost = "192.0.2.77"\nport',
                )
            ),
            f":{WEB_HOST_LINE + 1}: web.host: cannot listen on 192.0.2.77",  # below the inserted password
        ),
        (
            lambda d: (d / "rules" / "zz-copy.toml").write_text((d / "rules" / "perimeter.toml").read_text()),
            "zz-copy.toml:7: rules: rule id 'fence-climb' is also defined in",
        ),
    ],
)
def test_check_reports_bad_files_without_a_traceback(demo: Path, change: Any, expected: str) -> None:
    change(demo)
    result = streamwatch("check", "-c", "config.toml", cwd=demo, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_database_is_a_clear_error(demo: Path) -> None:
    port = free_port()
    config = demo / "config.toml"
    url = f"postgresql://streamwatch:db-s3cret@127.0.0.1:{port}/events"
    config.write_text(
        config.read_text().replace('database_url = "sqlite:///data/streamwatch.db"', f'database_url = "{url}"')
    )
    for command in (["run", "--duration", "5"], ["events"]):
        result = streamwatch(*command, "-c", "config.toml", cwd=demo)
        assert result.returncode == 2, result.stderr
        assert "storage.database_url: cannot open the database postgresql://streamwatch:***@127.0.0.1" in result.stderr
        assert "Traceback" not in result.stderr and "db-s3cret" not in result.stderr


def test_events_does_not_need_the_other_sections_secrets(demo: Path) -> None:
    config = demo / "config.toml"
    config.write_text(config.read_text().replace('# password = "${MQTT_PASSWORD}"', 'password = "${MQTT_PASSWORD}"'))
    assert "MQTT_PASSWORD is not set" in streamwatch("check", "-c", "config.toml", cwd=demo).stderr
    result = streamwatch("events", "-c", "config.toml", cwd=demo)
    assert result.returncode == 0 and result.stdout.strip() == "no events"


@pytest.mark.parametrize("command", [["run", "--duration", "4"], ["serve", "--duration", "4"], ["check"]])
def test_the_runtime_commands_import_nothing_from_the_tools(demo: Path, command: list[str]) -> None:
    """demo/ and bench/ are tools: `run`, `serve` and `check` never load them (-X importtime lists every import)."""
    config = demo / "config.toml"
    config.write_text(config.read_text() + f"\n[serve]\nport = {free_port()}\n")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "streamwatch", *command, "-c", "config.toml"],
        cwd=demo,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert "streamwatch.app.service" in imported or command[0] != "run"
    assert not {name for name in imported if name.startswith(("streamwatch.tools.bench", "streamwatch.tools.demo"))}


@pytest.mark.parametrize(
    ("value", "message"),
    [("0.08", "sample_interval_s is 0.1-3600 s, got 0.08"), ("soon", "expected seconds, got 'soon'")],
)
def test_a_bench_refuses_a_sample_interval_its_service_would_refuse(value: str, message: str) -> None:
    """Said at once, not after the bench has started services that then fail to start."""
    command = [sys.executable, "-m", "streamwatch", "bench", "learning-loop", "--interval", value]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
