"""Errors in the OpenAI API's shape: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from streamwatch.errors import StreamwatchError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    421: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(StreamwatchError):
    """A request this server answers with `status` and a message that says what to change."""

    def __init__(
        self, status: int, message: str, param: str | None = None, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.retry_after_s = retry_after_s  # said as Retry-After

    def body(self) -> dict[str, Any]:
        kind = _TYPES.get(self.status, "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.status}}

    def response(self, retry_after_s: float | None = None, headers: Mapping[str, str] | None = None) -> JSONResponse:
        extra = dict(headers or {})
        retry_after_s = self.retry_after_s if retry_after_s is None else retry_after_s
        if retry_after_s is not None:
            extra["Retry-After"] = str(max(1, round(retry_after_s)))
        return JSONResponse(self.body(), status_code=self.status, headers=extra or None)
