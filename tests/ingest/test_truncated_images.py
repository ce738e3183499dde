"""Images cut short are refused wherever images come in, also where the decoder alone would make do (a
PNG cut inside its last chunk decodes, and so does a JPEG without its end-of-image marker): the
decoder itself, the web API's ask (422) and `serve` (400, in OpenAI's shape)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from support.web import Site

from streamwatch.config import WebConfig
from streamwatch.errors import ImageRejected
from streamwatch.ingest.images import decode_image
from streamwatch.web.app import create_app


def encoded(kind: str) -> bytes:
    pixels = (np.random.default_rng(3).random((120, 160, 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, kind)
    return buffer.getvalue()


CUTS = [("PNG", 1), ("PNG", 4), ("PNG", 13), ("PNG", 20), ("PNG", 2000), ("JPEG", 1), ("JPEG", 2), ("JPEG", 500)]


@pytest.mark.parametrize(("kind", "cut"), CUTS)
def test_an_image_cut_short_is_refused(kind: str, cut: int) -> None:
    whole = encoded(kind)
    assert decode_image(whole).size == (160, 120)
    with pytest.raises(ImageRejected) as refused:
        decode_image(whole[:-cut])
    assert "cut short" in str(refused.value) and not refused.value.too_large


def test_padding_after_a_whole_jpeg_is_fine(tmp_path: Path) -> None:
    whole = encoded("JPEG") + b"\0" * 16  # some cameras pad their files
    assert decode_image(whole).size == (160, 120)
    (tmp_path / "frame.jpg").write_bytes(whole[:-40])
    with pytest.raises(ImageRejected):  # an image-folder camera's file, read from disk
        decode_image(tmp_path / "frame.jpg")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    site = Site(tmp_path)
    with TestClient(create_app(site, WebConfig()), base_url="http://127.0.0.1:8080") as client:
        yield client
    site.close()


@pytest.mark.parametrize(("kind", "cut"), CUTS[::2])
def test_the_web_api_answers_422(client: TestClient, kind: str, cut: int) -> None:
    files = {"image": ("frame", encoded(kind)[:-cut], "application/octet-stream")}
    csrf = client.get("/ask").text.split('name="csrf" value="')[1].split('"')[0]
    data = {"question": "Is the gate open? Answer yes or no.", "csrf": csrf}
    response = client.post("/api/ask", files=files, data=data)
    assert response.status_code == 422 and "cut short" in response.json()["detail"]


def test_serve_answers_400(tiny_glm4v: Path) -> None:
    from streamwatch.config import ServeConfig
    from streamwatch.inference.backends.transformers import TransformersBackend
    from streamwatch.inference.queue import InferenceQueue
    from streamwatch.inference.watchdog import ModelWatchdog
    from streamwatch.serve.api import create_openai_app

    backend = TransformersBackend.load(str(tiny_glm4v), device="cpu")
    queue = InferenceQueue(backend, max_batch=2, max_wait_s=0.01)
    limits = backend.prompt_limits(max_chars=2000, max_tokens=64, max_new_tokens=16)
    app = create_openai_app(
        queue, ServeConfig(), "tiny", default_tokens=16, timeout_s=30, limits=limits, watchdog=ModelWatchdog(queue, 60)
    )
    with TestClient(app, base_url="http://127.0.0.1:8000") as serve:
        for kind, cut in CUTS[1::2]:
            uri = f"data:image/{kind.lower()};base64," + base64.b64encode(encoded(kind)[:-cut]).decode()
            content = [{"type": "text", "text": "Is it open?"}, {"type": "image_url", "image_url": {"url": uri}}]
            response = serve.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]})
            assert response.status_code == 400 and "cut short" in response.json()["error"]["message"]
