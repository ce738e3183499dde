"""Shared fixtures: tiny models of real architectures, built once per test session, offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamwatch.vlm.tiny import make_tiny

REPO = Path(__file__).resolve().parent.parent


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


def random_image(seed: int, width: int = 320, height: int = 200) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def rtsp_url(tmp_path: Path) -> Iterator[str]:
    """rtsp://127.0.0.1:PORT/cam serving a generated H.264 clip from GStreamer's RTSP server."""
    import subprocess

    from streamwatch.ingest.synthetic import write_clip

    clip = write_clip(tmp_path / "clip.mp4", seconds=4)
    port = free_port()
    server = subprocess.Popen(
        ["/usr/bin/python3", str(REPO / "tests" / "helpers" / "rtsp_server.py"), str(clip), str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    line = server.stdout.readline()
    if "ready" not in line:
        server.kill()
        pytest.fail(f"RTSP server did not start: {line}{server.stdout.read()}")
    try:
        yield f"rtsp://127.0.0.1:{port}/cam"
    finally:
        server.kill()
        server.wait()
