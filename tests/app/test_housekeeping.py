"""Background loops outlive their own failures: a failed round is logged and the next one runs; a loop
that dies is restarted, and is reported as down meanwhile."""

from __future__ import annotations

import asyncio
import logging

import pytest

import streamwatch.app.housekeeping as housekeeping
from streamwatch.app.housekeeping import Loops


async def _until(condition: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_failing_round_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[int] = []

    async def step() -> None:
        rounds.append(len(rounds))
        if len(rounds) in (1, 2):
            raise OSError("disk full")

    async def scenario() -> None:
        loops = Loops()
        loops.start("retention", step, 0.01, first_now=True)
        await _until(lambda: len(rounds) >= 5)
        await loops.stop()

    with caplog.at_level(logging.ERROR, logger="streamwatch.app.housekeeping"):
        asyncio.run(scenario())
    assert caplog.text.count("retention: this round failed") == 2 and "OSError: disk full" in caplog.text


def test_a_loop_that_dies_is_restarted_and_reported_down_meanwhile(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(housekeeping, "RESTART_PAUSE_S", 0.2)
    starts: list[int] = []
    seen_down: list[dict[str, str]] = []

    async def body() -> None:
        starts.append(1)
        if len(starts) == 1:
            raise RuntimeError("bug in the sampler")
        await asyncio.Event().wait()

    async def scenario() -> None:
        loops = Loops()
        loops.spawn("sampler-gate", body)
        await _until(lambda: bool(loops.failures))
        seen_down.append(dict(loops.failures))
        await _until(lambda: len(starts) == 2 and not loops.failures)
        await loops.stop()

    with caplog.at_level(logging.ERROR, logger="streamwatch.app.housekeeping"):
        asyncio.run(scenario())
    assert seen_down == [{"sampler-gate": "RuntimeError: bug in the sampler"}]
    assert "sampler-gate stopped unexpectedly; restarting it" in caplog.text
