"""Batching, fairness, deadlines and failure handling of the shared inference queue.

The backend here is a recording double; the queue with the real transformers backend is tested in
test_transformers_backend.py.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence

import pytest
from PIL import Image
from support.helpers import random_image

from streamwatch.errors import DroppedError
from streamwatch.inference.backends.base import Backend, YesNo
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.types import AnswerKind, Prompt, Request

IMAGE = random_image(0, 32, 32)


class RecordingBackend(Backend):
    """Answers P(yes) from the question text ('p=0.7'); records the questions of every batch."""

    name = "recording"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()

    def score_yes_no(self, prompts: Sequence[Prompt]) -> list[YesNo]:
        self.gate.wait()
        self.batches.append([p.question for p in prompts])
        if any("explode" in p.question for p in prompts):
            raise ValueError("cannot process this image")
        time.sleep(self.delay_s)
        return [YesNo(float(p.question.split("p=")[1]) if "p=" in p.question else 0.5) for p in prompts]

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        self.batches.append([p.question for p in prompts])
        return [f"{p.question}:{max_new_tokens}" for p in prompts]


def request(
    question: str, source: str = "cam", deadline_in: float = 30.0, image: Image.Image | None = None, **kw: object
) -> Request:
    """A request about its own frame (a copy of IMAGE), unless `image` says which frame it is about."""
    frame = image if image is not None else IMAGE.copy()
    return Request(frame, question, source=source, deadline=time.monotonic() + deadline_in, **kw)  # type: ignore[arg-type]


def test_batches_fill_up_to_max_batch() -> None:
    backend = RecordingBackend()
    queue = InferenceQueue(backend, max_batch=8, max_wait_s=1.0)
    futures = [queue.submit(request(f"q{i} p=0.9", source=f"cam{i % 4}")) for i in range(20)]
    queue.start()
    answers = [f.result(timeout=10) for f in futures]
    queue.stop()
    assert [len(b) for b in backend.batches] == [8, 8, 4]
    assert all(a.text == "yes" and a.confidence == pytest.approx(0.9) for a in answers)
    assert [a.batch_size for a in answers[:8]] == [8] * 8


def test_partial_batch_leaves_after_max_wait() -> None:
    backend = RecordingBackend()
    queue = InferenceQueue(backend, max_batch=8, max_wait_s=0.1)
    queue.start()
    started = time.monotonic()
    answer = queue.submit(request("lonely p=0.2")).result(timeout=10)
    waited = time.monotonic() - started
    queue.stop()
    assert answer.text == "no" and answer.batch_size == 1
    assert 0.09 <= waited < 30  # waited for max_wait, then went without a full batch


def test_round_robin_keeps_a_busy_camera_from_starving_the_others() -> None:
    backend = RecordingBackend()
    queue = InferenceQueue(backend, max_batch=4, max_wait_s=0.5)
    busy = [queue.submit(request(f"busy{i}", source="busy")) for i in range(12)]
    quiet = [queue.submit(request(f"quiet{i}", source=f"quiet{i}")) for i in range(3)]
    queue.start()
    for f in busy + quiet:
        f.result(timeout=10)
    queue.stop()
    first = backend.batches[0]
    assert sorted(q for q in first if q.startswith("quiet")) == ["quiet0", "quiet1", "quiet2"]
    assert first.count("busy0") == 1 and len(first) == 4
    # The busy camera still gets every request answered, in its own order.
    busy_order = [q for b in backend.batches for q in b if q.startswith("busy")]
    assert busy_order == [f"busy{i}" for i in range(12)]


def test_served_producers_go_to_the_back_of_the_line() -> None:
    backend = RecordingBackend()
    queue = InferenceQueue(backend, max_batch=2, max_wait_s=0.2)
    for i in range(3):
        for cam in ("a", "b", "c"):
            queue.submit(request(f"{cam}{i}", source=cam))
    queue.start()
    queue.stop(drain=True)
    heads = [b[0][0] for b in backend.batches]
    # a,b then c,a then b,c ...: no camera is served first twice in a row.
    assert all(x != y for x, y in itertools.pairwise(heads))
    assert sum(len(b) for b in backend.batches) == 9


def test_expired_requests_are_dropped_and_counted() -> None:
    backend = RecordingBackend()
    queue = InferenceQueue(backend, max_batch=4, max_wait_s=0.05)
    stale = queue.submit(request("stale", deadline_in=-1.0))
    fresh = queue.submit(request("fresh p=0.6"))
    queue.start()
    assert fresh.result(timeout=10).text == "yes"
    with pytest.raises(DroppedError) as info:
        stale.result(timeout=10)
    assert info.value.reason == "deadline"
    queue.stop()
    stats = queue.stats()
    assert stats.dropped["deadline"] == 1
    assert stats.submitted == stats.answered + sum(stats.dropped.values()) + stats.failed == 2
    assert backend.batches == [["fresh p=0.6"]]


def test_requests_that_expire_while_the_model_is_busy_are_dropped() -> None:
    backend = RecordingBackend()
    backend.gate.clear()  # the model is stuck on a batch
    queue = InferenceQueue(backend, max_batch=1, max_wait_s=0.0)
    queue.start()
    first = queue.submit(request("first p=0.1"))
    time.sleep(0.1)
    late = queue.submit(request("late", deadline_in=0.2))
    time.sleep(0.4)
    backend.gate.set()
    assert first.result(timeout=10).text == "no"
    with pytest.raises(DroppedError, match="deadline"):
        late.result(timeout=10)
    queue.stop()


def test_a_flooding_producer_overflows_only_its_own_lane() -> None:
    backend = RecordingBackend()
    queue = InferenceQueue(backend, max_batch=4, max_wait_s=0.05, max_pending_per_source=3)
    flood = [queue.submit(request(f"f{i}", source="flood")) for i in range(5)]
    other = queue.submit(request("other", source="other"))
    queue.start()
    assert other.result(timeout=10)
    for f in flood[:2]:
        with pytest.raises(DroppedError, match="overflow"):
            f.result(timeout=10)
    assert all(f.result(timeout=10) for f in flood[2:])
    queue.stop()
    stats = queue.stats()
    assert stats.dropped["overflow"] == 2
    assert stats.pending == 0 and stats.answered == 4


def test_one_bad_request_fails_alone() -> None:
    backend = RecordingBackend()
    queue = InferenceQueue(backend, max_batch=4, max_wait_s=0.5)
    good = [queue.submit(request(f"good{i} p=0.8", source=f"c{i}")) for i in range(3)]
    bad = queue.submit(request("explode", source="c9"))
    queue.start()
    assert all(f.result(timeout=10).text == "yes" for f in good)
    with pytest.raises(RuntimeError, match="inference failed"):
        bad.result(timeout=10)
    queue.stop()
    stats = queue.stats()
    assert stats.failed == 1 and stats.answered == 3


def test_yes_no_and_generate_requests_run_as_separate_passes() -> None:
    backend = RecordingBackend()
    queue = InferenceQueue(backend, max_batch=8, max_wait_s=0.2)
    yn = queue.submit(request("a p=0.9"))
    gen = queue.submit(request("describe", kind=AnswerKind.GENERATE, max_new_tokens=7))
    gen2 = queue.submit(request("count", kind=AnswerKind.GENERATE, max_new_tokens=3))
    gen3 = queue.submit(request("colour", kind=AnswerKind.GENERATE, max_new_tokens=7))
    queue.start()
    assert yn.result(timeout=10).confidence == pytest.approx(0.9)
    assert gen.result(timeout=10).text == "describe:7"
    assert gen2.result(timeout=10).text == "count:3"  # generated no longer than it asked for
    assert gen2.result(timeout=10).confidence is None and gen3.result(timeout=10).text == "colour:7"
    queue.stop()
    assert sorted(map(len, backend.batches)) == [1, 1, 2]  # yes/no; 3 tokens; the two 7-token requests together


def test_stop_without_drain_drops_pending_as_shutdown() -> None:
    backend = RecordingBackend()
    queue = InferenceQueue(backend, max_batch=4, max_wait_s=10.0)
    futures = [queue.submit(request(f"q{i}", source=f"c{i}")) for i in range(2)]
    queue.stop(drain=False)
    for f in futures:
        with pytest.raises(DroppedError, match="shutdown"):
            f.result(timeout=1)
    late = queue.submit(request("after stop"))
    with pytest.raises(DroppedError, match="shutdown"):
        late.result(timeout=1)
    assert queue.stats().dropped["shutdown"] == 3


def test_stop_with_drain_answers_everything_pending() -> None:
    backend = RecordingBackend(delay_s=0.01)
    queue = InferenceQueue(backend, max_batch=3, max_wait_s=10.0)
    futures = [queue.submit(request(f"q{i} p=0.7", source=f"c{i % 2}")) for i in range(7)]
    queue.start()
    queue.stop(drain=True)
    assert all(f.result(timeout=0).text == "yes" for f in futures)


def test_async_producers_share_batches() -> None:
    backend = RecordingBackend()
    queue = InferenceQueue(backend, max_batch=16, max_wait_s=0.2)
    queue.start()

    async def cameras() -> list[float | None]:
        answers = await asyncio.gather(*(queue.ask(request(f"q p=0.{i}", source=f"cam{i}")) for i in range(1, 9)))
        return [a.confidence for a in answers]

    confidences = asyncio.run(cameras())
    queue.stop()
    assert confidences == pytest.approx([i / 10 for i in range(1, 9)])
    assert [len(b) for b in backend.batches] == [8]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        InferenceQueue(RecordingBackend(), max_batch=0)


def test_questions_about_one_frame_stay_together_in_a_batch() -> None:
    backend = RecordingBackend()
    queue = InferenceQueue(backend, max_batch=6, max_wait_s=0.5)
    frames = {cam: IMAGE.copy() for cam in ("a", "b", "c")}
    futures = [
        queue.submit(request(f"{cam}{rule}", source=cam, image=frames[cam]))
        for cam in ("a", "b", "c")
        for rule in range(3)
    ]
    queue.start()
    for future in futures:
        future.result(timeout=10)
    queue.stop()
    # round robin over frames, not single questions: a's three rules, then b's three
    assert backend.batches[0] == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert backend.batches[1] == ["c0", "c1", "c2"]


def test_several_workers_answer_everything_exactly_once() -> None:
    backend = RecordingBackend(delay_s=0.02)
    queue = InferenceQueue(backend, max_batch=4, max_wait_s=0.01, workers=3)
    futures = [queue.submit(request(f"p=0.{i % 9}", source=f"cam{i % 5}")) for i in range(60)]
    queue.start()
    answers = [f.result(timeout=20) for f in futures]
    queue.stop()
    assert [a.confidence for a in answers] == [float(f"0.{i % 9}") for i in range(60)]
    assert sorted(q for batch in backend.batches for q in batch) == sorted(f"p=0.{i % 9}" for i in range(60))
    stats = queue.stats()
    assert stats.answered == 60 and stats.pending == 0
    with pytest.raises(ValueError, match="workers must be at least 1"):
        InferenceQueue(backend, workers=0)
