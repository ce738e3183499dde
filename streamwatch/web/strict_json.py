"""JSON request bodies as JSON defines them: `NaN`, `Infinity` and `-Infinity` are not JSON numbers
(Python's `json` accepts them), nor is 1e999 a number a float holds. Every route of the web UI and API
parses its body here, so such a number is a 422 naming the body, like any malformed JSON, and never
reaches a model, the database or an error response that cannot be serialised. `streamwatch serve`
parses with `loads` too."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

NOT_JSON = "NaN, Infinity and -Infinity are not JSON numbers"
TOO_LARGE = "a number too large for a 64-bit float"


def loads(data: bytes | str) -> Any:
    """`json.loads`, refusing the non-standard constants with a `json.JSONDecodeError` at their place."""
    text = data.decode() if isinstance(data, bytes) else data

    def refuse(constant: str) -> Any:
        raise json.JSONDecodeError(f"{NOT_JSON} (found {constant})", text, max(0, text.find(constant)))

    def finite(number: str) -> float:
        value = float(number)
        if not math.isfinite(value):  # 1e999
            raise json.JSONDecodeError(f"{TOO_LARGE} (found {number[:40]})", text, max(0, text.find(number)))
        return value

    return json.loads(text, parse_constant=refuse, parse_float=finite)


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose handlers read JSON bodies with `loads`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
