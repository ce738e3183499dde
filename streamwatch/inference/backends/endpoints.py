"""Several model servers used round-robin, each with a health check and a circuit breaker.

A server is skipped while its `/models` health check fails, and for `reset_s` after `failures` failed
requests in a row (the breaker opens); after that one request tries it again (half-open) and a
success closes the breaker. When no server is usable, requests fail at once instead of piling up.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

from streamwatch.errors import InferenceError
from streamwatch.redact import redact_url

log = logging.getLogger(__name__)


class NoServerError(InferenceError):
    """Every configured server is unhealthy or has its breaker open."""


class Endpoint:
    def __init__(self, url: str, *, failures: int, reset_s: float) -> None:
        self.url, self.shown = url, redact_url(url)
        self._threshold, self._reset_s = failures, reset_s
        self.healthy = True
        self.failures = 0
        self.open_until = 0.0
        self.requests = 0  # sent to this server (for status and tests)

    def usable(self, now: float) -> bool:
        return self.healthy and now >= self.open_until

    def succeeded(self) -> None:
        if self.failures >= self._threshold:
            log.info("model server %s answers again: breaker closed", self.shown)
        self.failures = 0
        self.open_until = 0.0

    def failed(self, now: float, why: str) -> None:
        self.failures += 1
        if self.failures >= self._threshold:
            if self.failures == self._threshold:
                log.warning(
                    "model server %s failed %d times in a row (%s): not used for %.0f s",
                    self.shown,
                    self.failures,
                    why,
                    self._reset_s,
                )
            self.open_until = now + self._reset_s  # half-open after this: one failure re-opens it


class Endpoints:
    """Round-robin over the usable servers; `check` polls each server's health in a thread."""

    def __init__(
        self, urls: list[str], *, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.all = [Endpoint(url, failures=failures, reset_s=reset_s) for url in urls]
        self._cycle = itertools.cycle(self.all)
        self._lock = threading.Lock()
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pick(self) -> Endpoint:
        now = self._clock()
        with self._lock:
            for _ in range(len(self.all)):
                endpoint = next(self._cycle)
                if endpoint.usable(now):
                    endpoint.requests += 1
                    return endpoint
        states = ", ".join(f"{e.shown} ({'breaker open' if e.healthy else 'health check failing'})" for e in self.all)
        raise NoServerError(f"no model server is usable: {states}")

    def report(self, endpoint: Endpoint, ok: bool, why: str = "") -> None:
        with self._lock:
            endpoint.succeeded() if ok else endpoint.failed(self._clock(), why)

    def start_health_checks(self, probe: Callable[[Endpoint], bool], interval_s: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                for endpoint in self.all:
                    healthy = probe(endpoint)
                    if healthy != endpoint.healthy:
                        log.warning("model server %s is %s", endpoint.shown, "healthy" if healthy else "unhealthy")
                    endpoint.healthy = healthy

        self._thread = threading.Thread(target=loop, name="model-server-health", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
