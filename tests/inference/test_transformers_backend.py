"""The transformers backend on tiny models of two real families (GLM-4V and Qwen2-VL)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from support.helpers import random_image

from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.types import AnswerKind, Prompt, Request
from streamwatch.vlm.prompts import clean_answer

QUESTIONS = [
    "Is any person climbing the fence? Answer yes or no.",
    "Is a vehicle stopped at the gate? Answer yes or no.",
    "How many boxes are on the shelf? Answer with a number.",
    "Is the fire exit blocked?",
]


@pytest.fixture(scope="module")
def backends(tiny_glm4v: Path, tiny_qwen2vl: Path) -> dict[str, TransformersBackend]:
    return {
        "glm4v": TransformersBackend.load(str(tiny_glm4v), device="cpu", max_image_side=256),
        "qwen2_vl": TransformersBackend.load(str(tiny_qwen2vl), device="cpu", max_image_side=256),
    }


def prompts() -> list[Prompt]:
    # Different sizes and question lengths, so rows get different amounts of left padding.
    sizes = [(320, 200), (128, 128), (640, 360), (90, 300)]
    return [Prompt(random_image(i, w, h), q) for i, ((w, h), q) in enumerate(zip(sizes, QUESTIONS, strict=True))]


@pytest.mark.parametrize("family", ["glm4v", "qwen2_vl"])
def test_yes_no_is_one_probability_per_prompt(backends: dict[str, TransformersBackend], family: str) -> None:
    scores = backends[family].score_yes_no(prompts())
    assert len(scores) == 4
    for score in scores:
        assert 0.0 < score.p_yes < 1.0
        assert score.text == ("yes" if score.p_yes >= 0.5 else "no")


@pytest.mark.parametrize("family", ["glm4v", "qwen2_vl"])
def test_batched_yes_no_equals_unbatched(backends: dict[str, TransformersBackend], family: str) -> None:
    backend = backends[family]
    batch = prompts()
    together = [s.p_yes for s in backend.score_yes_no(batch)]
    alone = [backend.score_yes_no([p])[0].p_yes for p in batch]
    assert together == pytest.approx(alone, abs=1e-4)
    # The random model must still tell the inputs apart, or this comparison proves nothing.
    assert max(alone) - min(alone) > 1e-3


@pytest.mark.parametrize("family", ["glm4v", "qwen2_vl"])
def test_batched_generate_equals_unbatched(backends: dict[str, TransformersBackend], family: str) -> None:
    backend = backends[family]
    batch = prompts()
    together = backend.generate(batch, max_new_tokens=5)
    alone = [backend.generate([p], max_new_tokens=5)[0] for p in batch]
    assert together == alone
    assert all(isinstance(t, str) for t in together)


def test_yes_no_uses_every_single_token_variant(backends: dict[str, TransformersBackend]) -> None:
    backend = backends["glm4v"]
    tokenizer = backend.processor.tokenizer
    decoded_yes = {tokenizer.decode([i]) for i in backend.yes_ids}
    assert {"Yes", "yes", " yes", " Yes"} <= decoded_yes
    assert not set(backend.yes_ids) & set(backend.no_ids)


def test_images_are_downscaled_to_the_configured_side(backends: dict[str, TransformersBackend]) -> None:
    backend = backends["glm4v"]
    big = backend.yes_no_inputs([Prompt(random_image(1, 1600, 900), "q")])
    small = backend.yes_no_inputs([Prompt(random_image(1, 256, 144), "q")])
    # Same grid: the 1600x900 frame was shrunk to 256 px before the processor saw it.
    assert big["image_grid_thw"].tolist() == small["image_grid_thw"].tolist()


def test_answers_are_stripped_of_template_wrappers() -> None:
    assert clean_answer("<|begin_of_box|>Yes<|end_of_box|>") == "Yes"
    assert clean_answer("<think>the fence is intact</think>\nNo") == "No"
    assert clean_answer(" 3<|im_end|><|endoftext|>") == "3"
    assert clean_answer("<think>unfinished reasoning") == ""


def test_queue_batches_real_model_requests_from_many_threads(backends: dict[str, TransformersBackend]) -> None:
    backend = backends["qwen2_vl"]
    expected = {q: backend.score_yes_no([Prompt(random_image(7), q)])[0].p_yes for q in QUESTIONS}
    queue = InferenceQueue(backend, max_batch=4, max_wait_s=0.2)
    results: dict[tuple[str, str], float] = {}

    def camera(name: str) -> None:
        futures = {q: queue.submit(Request(random_image(7), q, source=name)) for q in QUESTIONS}
        for q, future in futures.items():
            answer = future.result(timeout=60)
            assert answer.confidence is not None
            results[(name, q)] = answer.confidence

    threads = [threading.Thread(target=camera, args=(f"cam{i}",)) for i in range(3)]
    queue.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.stop()
    assert len(results) == 12
    for (_name, q), p in results.items():
        assert p == pytest.approx(expected[q], abs=1e-4)
    stats = queue.stats()
    assert stats.answered == 12
    assert max(stats.batch_sizes) > 1, "requests from different cameras must share forward passes"


def test_generate_requests_through_the_queue(backends: dict[str, TransformersBackend]) -> None:
    queue = InferenceQueue(backends["glm4v"], max_batch=4, max_wait_s=0.05)
    queue.start()
    future = queue.submit(Request(random_image(3), "Describe the scene.", AnswerKind.GENERATE, max_new_tokens=4))
    answer = future.result(timeout=60)
    queue.stop()
    assert answer.confidence is None
    assert isinstance(answer.text, str)
    assert answer.model.endswith("tiny-glm4v")
