"""NaN, Infinity and numbers past a float in every JSON body: a 422 (the web API) or 400 (`serve`) naming
the problem, never a 500 with a traceback. Every route of the web app that takes a JSON body is tried,
so a route added later is covered too."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support.web import Site, add_event

from streamwatch.config import WebConfig
from streamwatch.web.app import create_app
from streamwatch.web.strict_json import loads

BODIES = [
    '{"label": NaN}',
    '{"verdict": "confirmed", "note": Infinity}',
    '{"kind": "finetune", "options": {"lr": -Infinity}}',
    '{"kind": "eval", "options": {"target_precision": NaN}}',
    '{"lr": 1e999}',
    "NaN",
    "[Infinity]",
    '{"nested": [{"deeper": [1, 2, -Infinity]}]}',
]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    site = Site(tmp_path)
    add_event(site.store, "e1")
    with TestClient(create_app(site, WebConfig()), base_url="http://127.0.0.1:8080") as client:
        yield client
    site.close()


def json_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path with its parameters filled) of every route whose OpenAPI schema takes a JSON body."""
    found = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        for method, operation in operations.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "e1", path)))
    return found


def test_every_json_route_is_found(client: TestClient) -> None:
    paths = {path for _method, path in json_routes(client)}
    assert {"/api/labels/e1", "/api/events/e1/review", "/api/alerts/e1/review", "/api/jobs"} <= paths


@pytest.mark.parametrize("body", BODIES)
def test_non_finite_numbers_are_a_422_on_every_json_route(
    client: TestClient, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    for method, path in json_routes(client):
        response = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (method, path, response.status_code, response.text)
        assert "JSON" in response.text and ("not JSON numbers" in response.text or "too large" in response.text)
    assert not caplog.records  # no traceback, no error logged


def test_the_same_bodies_with_finite_numbers_still_parse() -> None:
    assert loads('{"lr": 0.001, "n": [1, -2.5e10, 1e308]}') == {"lr": 0.001, "n": [1, -2.5e10, 1e308]}
    assert loads('"NaN is only a word here"') == "NaN is only a word here"
    for body in BODIES:
        with pytest.raises(json.JSONDecodeError):
            loads(body)
