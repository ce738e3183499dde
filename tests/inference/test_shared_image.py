"""Several questions about one image share one pass over it, and answer exactly as the plain path does."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.helpers import random_image

from streamwatch.inference.backends.kernels import compile_layers
from streamwatch.inference.backends.shared_image import group_by_image, split_prompt
from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.types import Prompt

QUESTIONS = [
    "Is any person climbing the fence? Answer yes or no.",
    "Is the gate open? Answer yes or no.",
    "Is there a vehicle in the driveway right now? Answer yes or no.",
]


def test_prompts_split_after_the_image_and_group_by_image(shared_and_plain: tuple[TransformersBackend, ...]) -> None:
    shared, _ = shared_and_plain
    text = shared.prompt_text(QUESTIONS[0])
    split = split_prompt(text)
    assert split is not None and split.prefix + split.suffix == text
    assert split.suffix.startswith(QUESTIONS[0]) and QUESTIONS[0] not in split.prefix
    a, b = random_image(1), random_image(2)
    assert group_by_image([Prompt(a, "x"), Prompt(b, "y"), Prompt(a, "z")]) == [[0, 2], [1]]
    assert split_prompt("no image here") is None


def test_shared_image_answers_equal_the_plain_path(shared_and_plain: tuple[TransformersBackend, ...]) -> None:
    shared, plain = shared_and_plain
    gate, yard = random_image(10, 320, 200), random_image(11, 256, 256)  # different sizes: different prefixes
    prompts = [
        Prompt(gate, QUESTIONS[0]),
        Prompt(gate, QUESTIONS[1]),
        Prompt(yard, QUESTIONS[2]),
        Prompt(gate, QUESTIONS[2]),
        Prompt(yard, QUESTIONS[0]),
    ]
    together = [a.p_yes for a in shared.score_yes_no(prompts)]
    one_by_one = [plain.score_yes_no([p])[0].p_yes for p in prompts]
    batched_plain = [a.p_yes for a in plain.score_yes_no(prompts)]
    assert together == pytest.approx(one_by_one, abs=1e-4)
    assert together == pytest.approx(batched_plain, abs=1e-4)
    assert len(set(round(p, 6) for p in together)) > 1  # the questions really differ


def test_a_batch_without_repeated_images_takes_the_plain_path(
    shared_and_plain: tuple[TransformersBackend, ...],
) -> None:
    shared, plain = shared_and_plain
    prompts = [Prompt(random_image(20), QUESTIONS[0]), Prompt(random_image(21), QUESTIONS[1])]
    assert [a.p_yes for a in shared.score_yes_no(prompts)] == pytest.approx(
        [a.p_yes for a in plain.score_yes_no(prompts)], abs=1e-6
    )


def test_two_queue_workers_sharing_the_backend_get_the_same_answers(
    shared_and_plain: tuple[TransformersBackend, ...],
) -> None:
    import threading

    shared, plain = shared_and_plain
    frame = random_image(30, 320, 200)
    with_sharing = [Prompt(frame, q) for q in QUESTIONS]
    without = [Prompt(random_image(31 + i), q) for i, q in enumerate(QUESTIONS)]
    expected = {id(batch): [a.p_yes for a in plain.score_yes_no(batch)] for batch in (with_sharing, without)}
    failures: list[str] = []

    def hammer(batch: list[Prompt]) -> None:
        for _ in range(6):
            got = [a.p_yes for a in shared.score_yes_no(batch)]
            if got != pytest.approx(expected[id(batch)], abs=1e-4):
                failures.append(f"{got} != {expected[id(batch)]}")

    threads = [threading.Thread(target=hammer, args=(batch,)) for batch in (with_sharing, without, with_sharing)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures[:2]


@pytest.mark.slow
def test_compiled_layers_answer_like_the_plain_model(tiny_glm4v: Path) -> None:
    compiled = TransformersBackend.load(str(tiny_glm4v), device="cpu")
    plain = TransformersBackend.load(str(tiny_glm4v), device="cpu")
    frame = random_image(40, 320, 200)
    prompts = [Prompt(frame, QUESTIONS[0]), Prompt(frame, QUESTIONS[1]), Prompt(random_image(41), QUESTIONS[2])]
    expected = [a.p_yes for a in plain.score_yes_no(prompts)]
    assert compile_layers(compiled.model) == 4  # 2 vision blocks + 2 decoder layers
    assert [a.p_yes for a in compiled.score_yes_no(prompts)] == pytest.approx(expected, abs=1e-4)
    assert compiled.generate(prompts[:1], 4) == plain.generate(prompts[:1], 4)
