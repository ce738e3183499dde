"""config.toml loading: the shipped file is valid; malformed ones name file, line and key."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest
from support.helpers import REPO

from streamwatch.config import load_settings
from streamwatch.errors import DataFileError

VALID_CAMERA = """
[[cameras]]
id = "gate"
url = "rtsp://cam.local/stream1"
"""


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "models" / "m").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(DataFileError) as info:
        load_settings(path)
    return info.value.problems


def test_shipped_config_is_valid(tmp_path: Path) -> None:
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    (tmp_path / "models" / "demo-glm4v").mkdir(parents=True)
    (tmp_path / "samples").mkdir()
    for clip in ("yard", "aisle", "line"):
        (tmp_path / "samples" / f"{clip}.mp4").touch()
    settings = load_settings(tmp_path / "config.toml")
    assert [(c.id, c.tags) for c in settings.cameras] == [
        ("yard", ["perimeter"]),
        ("aisle", ["warehouse"]),
        ("line", ["defect"]),
    ]
    assert settings.model_ref() == str((tmp_path / "models" / "demo-glm4v").resolve())
    assert settings.storage.database_url.startswith("sqlite:///")
    assert settings.cameras[0].url == str(tmp_path / "samples" / "yard.mp4")  # relative to the config file
    assert not any(c.describe for c in settings.cameras)  # the demo model cannot describe a scene


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[model]\nid = "./models/m"\n' + VALID_CAMERA)
    settings = load_settings(path)
    assert settings.path(settings.rules_dir) == (tmp_path / "rules").resolve()
    assert settings.model_ref() == str((tmp_path / "models" / "m").resolve())


def test_hub_ids_stay_hub_ids(tmp_path: Path) -> None:
    path = write(tmp_path, '[model]\nid = "zai-org/GLM-4.6V-Flash"\ndevice = "cuda:1"\ndtype = "bfloat16"\n')
    settings = load_settings(path)
    assert settings.model_ref() == "zai-org/GLM-4.6V-Flash"
    assert settings.model.device == "cuda:1"


def test_environment_supplies_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_PASSWORD", "s3cret")
    path = write(tmp_path, '[model]\nid = "./models/m"\n[mqtt]\nusername = "sw"\npassword = "${MQTT_PASSWORD}"\n')
    settings = load_settings(path)
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.mqtt)


MALFORMED = [
    pytest.param('[model]\nid = "./models/m"\nmax_bach = 4\n', ":3: model.max_bach: unknown key", id="unknown-key"),
    pytest.param('[modle]\nid = "x"\n', ":1: modle: unknown key", id="unknown-section"),
    pytest.param(
        VALID_CAMERA + 'source = "/etc/shadow"\n', ":4: cameras[0].source: unknown key", id="unknown-camera-key"
    ),
    pytest.param(
        'cameras = [{id = "a", url = "a.mp4", source = "/etc/shadow"}]\n',
        ":1: cameras[0].source: unknown key",
        id="unknown-inline-camera-key",
    ),
    pytest.param(
        VALID_CAMERA + '[cameras.source]\npath = "/etc/shadow"\n',
        ":4: cameras[0].source: unknown key",
        id="camera-table",
    ),
    pytest.param(
        "[model]\nmax_batch = 0\n",
        ":2: model.max_batch: Input should be greater than or equal to 1 (got 0)",
        id="batch-zero",
    ),
    pytest.param(
        '[model]\nmax_wait_ms = "fast"\n', ":2: model.max_wait_ms: Input should be a valid integer", id="wrong-type"
    ),
    pytest.param(
        '[model]\ndevice = "gpu"\n', ":2: model.device: expected auto, cpu, mps, cuda or cuda:N", id="bad-device"
    ),
    pytest.param(
        '[model]\ndtype = "float64"\n',
        ":2: model.dtype: Input should be 'auto', 'float32', 'bfloat16' or 'float16' (got 'float64')",
        id="bad-dtype",
    ),
    pytest.param(
        '[model]\nid = "./models/missing"\n',
        ":2: model.id: local model directory ./models/missing does not "
        "exist (build the offline demo model with: streamwatch model make-tiny ./models/missing)",
        id="missing-model-dir",
    ),
    pytest.param(
        VALID_CAMERA + "sample_interval_s = -2\n",
        ":4: cameras[0].sample_interval_s: Input should be greater than or equal to 0.1",
        id="negative-interval",
    ),
    pytest.param(
        '[[cameras]]\nid = "Front Door"\nurl = "a.mp4"\n',
        ":2: cameras[0].id: expected lowercase letters",
        id="bad-camera-id",
    ),
    pytest.param(
        '[[cameras]]\nid = "a"\nurl = "ftp://x/y"\n', ":3: cameras[0].url: unsupported scheme 'ftp'", id="bad-scheme"
    ),
    pytest.param(
        '[[cameras]]\nid = "a"\nurl = "rtsp:///stream"\n',
        ":3: cameras[0].url: the URL has no host",
        id="url-without-host",
    ),
    pytest.param('[[cameras]]\nid = "a"\n', ":1: cameras[0].url: required key is missing", id="missing-url"),
    pytest.param(VALID_CAMERA + VALID_CAMERA, ":6: cameras[1].id: camera id 'gate' is used twice", id="duplicate-id"),
    pytest.param(
        VALID_CAMERA + "\n[cameras.vars]\nfloor = 3\n",
        ":6: cameras[0].vars.floor: Input should be a valid string",
        id="var-not-string",
    ),
    pytest.param(
        "[mqtt]\nport = 70000\n", ":2: mqtt.port: Input should be less than or equal to 65535", id="port-range"
    ),
    pytest.param('[mqtt]\ntopic_prefix = "site/#"\n', ":2: mqtt.topic_prefix: expected a topic like", id="wildcard"),
    pytest.param(
        '[mqtt]\npassword = "${NOT_SET_ANYWHERE}"\n',
        ":2: mqtt.password: environment variable NOT_SET_ANYWHERE is not set",
        id="missing-env",
    ),
    pytest.param('[model]\nid = "x"\nmax_batch = \n', ":3: TOML syntax error: Invalid value", id="toml-syntax"),
    pytest.param(
        'log_level = "LOUD"\n', ":1: log_level: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'", id="log-level"
    ),
    pytest.param(
        '[[cameras]]\nid = "a"\nurl = "a.mp4"\ntransport = "quic"\n',
        ":4: cameras[0].transport: Input should be 'tcp' or 'udp'",
        id="transport",
    ),
    pytest.param(
        VALID_CAMERA + 'decode = "iframes"\n',
        ":4: cameras[0].decode: Input should be 'auto', 'keyframes' or 'all' (got 'iframes')",
        id="decode-mode",
    ),
    pytest.param(
        VALID_CAMERA + 'hwaccel = "nvdec"\n', ":4: cameras[0].hwaccel: Input should be 'none', 'cuda'", id="hwaccel"
    ),
    pytest.param(
        VALID_CAMERA + "stall_timeout_s = 0\n",
        ":4: cameras[0].stall_timeout_s: Input should be greater than 0",
        id="stall-timeout",
    ),
    pytest.param(
        VALID_CAMERA + 'reconnect_max_s = "30s"\n',
        ":4: cameras[0].reconnect_max_s: Input should be a valid number",
        id="reconnect-max",
    ),
    pytest.param(
        '[model]\nbackend = "openai"\nid = "glm"\n',
        ':1: model.remote.base_urls: model.backend = "openai" needs at least one server URL',
        id="openai-without-servers",
    ),
    pytest.param(
        '[model]\nbackend = "openai"\n[model.remote]\nbase_urls = ["gpu1:8000"]\n',
        ":4: model.remote.base_urls: 'gpu1:8000': expected an http(s) URL",
        id="server-url",
    ),
    pytest.param(
        "[model.remote]\nconcurrency = 0\n", ":2: model.remote.concurrency: Input should be greater", id="concurrency"
    ),
    pytest.param(
        '[storage]\ndatabase_url = "mysql://u:pw@db/x"\n',
        ":2: storage.database_url: unsupported database 'mysql'; expected sqlite:///path/to/file.db or postgresql://",
        id="database-kind",
    ),
    pytest.param(
        '[storage]\ndatabase_url = "events.db"\n',
        ":2: storage.database_url: expected a database URL: sqlite:///",
        id="database-not-url",
    ),
    pytest.param("[serve]\nport = 0\n", ":2: serve.port: Input should be greater than or equal to 1", id="serve-port"),
    pytest.param(
        '[serve]\nmax_tokens = "many"\n', ":2: serve.max_tokens: Input should be a valid integer", id="serve-max-tokens"
    ),
    # camera sources: files are relative to the config file and must exist; URLs must parse
    pytest.param(
        '[[cameras]]\nid = "a"\nurl = "clips/nope.mp4"\n',
        ":3: cameras[0].url: no such file or folder: ",
        id="camera-file-missing",
    ),
    pytest.param(
        '[[cameras]]\nid = "a"\nurl = "file:///nowhere/x.mp4"\n',
        ":3: cameras[0].url: no such file or folder: /nowhere/x.mp4",
        id="camera-file-url-missing",
    ),
    pytest.param(
        '[[cameras]]\nid = "a"\nurl = "rtsp://cam:99999/x"\n',
        ":3: cameras[0].url: the URL's port is not a number",
        id="camera-port",
    ),
    pytest.param(
        '[[cameras]]\nid = "a"\nurl = "rtsp://cam/x\\n"\n',
        ":3: cameras[0].url: contains a control character",
        id="camera-url-newline",
    ),
    pytest.param('[[cameras]]\nid = "a"\nurl = "  "\n', ":3: cameras[0].url: must not be empty", id="camera-blank"),
    pytest.param(
        VALID_CAMERA + "sample_interval_s = 0.01\n",
        ":4: cameras[0].sample_interval_s: Input should be greater than or equal to 0.1",
        id="sampling-too-fast",
    ),
    pytest.param('[storage]\nsnapshot_dir = "config.toml"\n', ":2: storage.snapshot_dir: ", id="snapshots-in-a-file"),
    # MQTT
    pytest.param('[mqtt]\nhost = ""\n', ":2: mqtt.host: expected a host name or IP address", id="mqtt-host-empty"),
    pytest.param(
        '[mqtt]\nhost = "mqtt://broker:1883"\n',
        ":2: mqtt.host: expected a host name or IP address, not a URL",
        id="mqtt-host-url",
    ),
    pytest.param('[mqtt]\nhost = "my broker"\n', ":2: mqtt.host: expected a host name", id="mqtt-host-space"),
    pytest.param(
        '[mqtt]\ntls = true\nca_file = "certs/ca.pem"\n', ":3: mqtt.ca_file: no such file: ", id="mqtt-ca-missing"
    ),
    pytest.param(
        '[mqtt]\nca_file = "config.toml"\n',
        ":2: mqtt.ca_file: ca_file is used only with tls = true",
        id="mqtt-ca-without-tls",
    ),
    pytest.param('[mqtt]\ntopic_prefix = "site//a"\n', ":2: mqtt.topic_prefix: expected a topic", id="empty-level"),
    pytest.param(
        '[mqtt]\nhome_assistant_prefix = "ha/#"\n', ":2: mqtt.home_assistant_prefix: expected a topic", id="ha-prefix"
    ),
    # web, serve, model
    pytest.param(
        '[web]\nhost = "http://0.0.0.0"\n',
        ":2: web.host: expected a host name or IP address, not a URL",
        id="web-host-url",
    ),
    pytest.param(
        '[web]\npassword_hash = "pbkdf2_sha256$0$c2FsdHNhbHRzYWx0$aGFzaA"\n',
        ":2: web.password_hash: the iteration count must be a number from 10000 to 2000000",
        id="hash-zero-iterations",
    ),
    pytest.param(
        '[web]\ntoken_hash = "pbkdf2_sha256$1000000000000$c2FsdHNhbHRzYWx0$aGFzaA"\n',
        ":2: web.token_hash: the iteration count must be",
        id="hash-huge-iterations",
    ),
    pytest.param(
        '[web]\npassword_hash = "pbkdf2_sha256$200000$!!not*base64$aGFzaA"\n',
        ":2: web.password_hash: the salt and the hash must be base64",
        id="hash-bad-base64",
    ),
    pytest.param(
        '[web]\npassword_hash = "pbkdf2_sha256$200000$c2FsdHNhbHRzYWx0$aGFzaA"\n',
        ":2: web.password_hash: the salt must hold at least 8 bytes and the hash 32",
        id="hash-short-digest",
    ),
    pytest.param('[serve]\napi_key = "short"\n', ":2: serve.api_key: use at least 16 characters", id="serve-key"),
    pytest.param('[model]\nid = "  "\n', ":2: model.id: must not be empty", id="model-id-blank"),
    pytest.param(
        "[model]\nmax_question_chars = 0\n",
        ":2: model.max_question_chars: Input should be greater",
        id="question-chars",
    ),
    # the file itself
    pytest.param(
        "x = " + "[" * 20 + "]" * 20 + "\n",
        ":1: arrays or inline tables are nested more than 16 deep",
        id="nested-arrays",
    ),
    pytest.param(
        "[model]\nx = " + "{a = " * 20 + "1" + "}" * 20 + "\n",
        ":2: arrays or inline tables are nested more than 16 deep",
        id="nested-inline-tables",
    ),
    pytest.param(
        "x = [\n" + "[{a = [\n" * 7 + "]}]\n" * 7 + "]\n",
        ":7: arrays or inline tables are nested more",
        id="nested-multiline",
    ),
    pytest.param(
        "[" + ".".join(["a"] * 40) + "]\n",
        ":1: a dotted key or table name has more than 16 parts",
        id="deep-table-header",
    ),
    pytest.param(
        "log_level = 'INFO'\n" + " . ".join(['"k"'] * 40) + " = 1\n",
        ":2: a dotted key or table name has more than 16 parts",
        id="deep-quoted-key",
    ),
    pytest.param(
        "[model]\nx = {" + ".".join(["b"] * 40) + " = 1}\n",
        ":2: a dotted key or table name has more",
        id="deep-key-in-inline-table",
    ),
]


@pytest.mark.parametrize(("body", "expected"), MALFORMED)
def test_malformed_config_names_file_line_and_key(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, body)
    found = problems(path)
    assert any(p.startswith(str(path)) and expected in p for p in found), found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, '[model]\nmax_batch = 0\ndevice = "gpu"\n[mqtt]\nport = 0\n')
    found = problems(path)
    assert len(found) == 3
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in found] == ["2", "3", "5"]


def test_secrets_are_not_echoed_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, '[[cameras]]\nid = "a"\nurl = "ftp://admin:hunter2@cam/x"\n[mqtt]\npassword = 12\n')
    found = "\n".join(problems(path))
    assert "hunter2" not in found
    assert "unsupported scheme" in found


def test_missing_file(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.toml") == [f"{tmp_path / 'nope.toml'}: file not found"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'log_level = "INFO"\n[mqtt]\nhost = "caf\xe9"\n', ":3: not UTF-8 text (byte 0xe9)"),
        (b"\xff\xfelog_level = 1\n", ":1: not UTF-8 text (byte 0xff)"),
        (b"[model]\n# a comment\n\n# \x80\n", ":4: not UTF-8 text (byte 0x80)"),
    ],
)
def test_bytes_that_are_not_utf8_are_named_by_line(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(data)
    assert any(p.startswith(str(path)) and expected in p for p in problems(path)), problems(path)


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'\xef\xbb\xbflog_level = "DEBUG"\n[model]\nid = "hub/model"\n')
    assert load_settings(path).log_level == "DEBUG"


def test_files_that_cannot_be_read_safely_are_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.toml"
    huge.write_text("# padding\n" * 200_000)
    assert problems(huge) == [f"{huge}: file is larger than 1024 KiB"]
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # reading it would block for ever
    assert problems(fifo) == [f"{fifo}: not a regular file"]
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    assert problems(loop)[0].startswith(f"{loop}: cannot read: ")
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    assert problems(folder) == [f"{folder}: not a regular file"]


def test_a_password_in_a_server_url_is_masked_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, '[model]\nbackend = "openai"\n[model.remote]\nbase_urls = ["ftp://u:pa/ss#1@gpu/v1"]\n')
    found = "\n".join(problems(path))
    assert "ftp://u:***@gpu/v1" in found and "pa/ss" not in found


def test_events_need_only_the_storage_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[mqtt]\npassword = "${UNSET_MQTT_PASSWORD}"\n[[cameras]]\nid = "a"\nurl = "gone.mp4"\n'
        '[storage]\ndatabase_url = "sqlite:///db/events.db"\n',
    )
    assert any("UNSET_MQTT_PASSWORD" in p for p in problems(path))  # the service needs everything
    settings = load_settings(path, sections=("storage",))
    assert settings.database_url() == f"sqlite:///{tmp_path / 'db' / 'events.db'}"


def test_a_section_set_back_to_what_runs_needs_no_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    import os

    from streamwatch.app.config_watch import ConfigWatch

    path = write(tmp_path, '[model]\nid = "./models/m"\n[web]\nsession_hours = 12\n')
    applied: list[object] = []

    async def apply(cameras: object) -> None:
        applied.append(cameras)

    watch = ConfigWatch(load_settings(path), apply)

    async def edit(session_hours: int, stamp: int) -> None:
        path.write_text(f'[model]\nid = "./models/m"\n[web]\nsession_hours = {session_hours}\n', encoding="utf-8")
        os.utime(path, ns=(stamp, stamp))
        await watch.step()  # seen changed
        await watch.step()  # stood still: read

    caplog.set_level("INFO")
    asyncio.run(edit(2, 10**18))
    assert "web changed: restart streamwatch to apply it" in caplog.text
    caplog.clear()
    asyncio.run(edit(12, 2 * 10**18))  # back to the value that runs
    assert "restart" not in caplog.text and "its cameras are the same" in caplog.text
    assert watch.problem() is None and not applied
