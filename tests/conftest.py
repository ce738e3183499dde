"""Shared fixtures: tiny models of real architectures, built once per test session, offline; an MQTT
broker of the test's own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.helpers import CHROMIUM
from support.mqtt import Broker
from support.notify import webhook  # noqa: F401  (a fixture for the tests of every folder)

from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.tools.bench.rtsp import RtspServer
from streamwatch.tools.tiny import make_tiny


@pytest.fixture(scope="session")
def tiny_glm4v(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("models") / "tiny-glm4v", "glm4v", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen2vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("models") / "tiny-qwen2vl", "qwen2_vl", seed=0)


@pytest.fixture(scope="session", params=["glm4v", "qwen2_vl"])
def tiny_model(request: pytest.FixtureRequest) -> Iterator[Path]:
    name = "tiny_glm4v" if request.param == "glm4v" else "tiny_qwen2vl"
    yield request.getfixturevalue(name)


@pytest.fixture(scope="module")
def shared_and_plain(tiny_model: Path) -> tuple[TransformersBackend, TransformersBackend]:
    """The tiny model twice: one backend sharing passes over an image between questions, one plain."""
    shared = TransformersBackend.load(str(tiny_model), device="cpu")
    plain = TransformersBackend.load(str(tiny_model), device="cpu")
    plain.share_images = False
    return shared, plain


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """H.264 clips for the RTSP server, encoded once: 10 fps, keyframe every second unless named."""
    from streamwatch.tools.synthetic import write_clip

    folder = tmp_path_factory.mktemp("clips")
    return {
        "cam": write_clip(folder / "cam.mp4", seconds=8),
        "small": write_clip(folder / "small.mp4", seconds=8, width=320, height=180),
        "long-gop": write_clip(folder / "long-gop.mp4", seconds=8, gop=60),
        "bframes": write_clip(folder / "bframes.mp4", seconds=5, bframes=2),
        "short": write_clip(folder / "short.mp4", seconds=0.3),
    }


@pytest.fixture
def rtsp_server(clips: dict[str, Path]) -> Iterator[RtspServer]:
    """GStreamer's RTSP server with /cam, /small, /long-gop, /short (H.264) and /mic (audio only)."""
    mounts = {f"/{name}": path for name, path in clips.items()}
    with RtspServer(mounts, audio_only=["/mic"]) as server:
        yield server


@pytest.fixture
def rtsp_url(rtsp_server: RtspServer) -> str:
    return rtsp_server.url("/cam")


POSTGRES_ADMIN = os.environ.get("STREAMWATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database on the server at STREAMWATCH_TEST_POSTGRES (default: the local
    one on port 5432), dropped afterwards. Skipped, saying why, where no server answers."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    admin_url = make_url(POSTGRES_ADMIN).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"streamwatch_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(
            f"no PostgreSQL at {admin_url.render_as_string()} ({str(exc).splitlines()[0]}); "
            "set STREAMWATCH_TEST_POSTGRES"
        )
    yield admin_url.set(database=name).render_as_string(hide_password=False).replace("+psycopg", "", 1)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """mosquitto on a free port, for one test."""
    with Broker(tmp_path) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Chromium (Debian's, driven by Playwright); tests using it skip where it is not installed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: run in parallel (make test), they start at once instead of being the tail."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
