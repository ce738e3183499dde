"""RoPE positions computed before the forward pass (inference/backends/positions.py) are the model's own."""

from __future__ import annotations

from pathlib import Path

import torch
from support.helpers import random_image

from streamwatch.inference.backends.positions import add_positions, rope_deltas
from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.types import Prompt

QUESTIONS = ["Is any person climbing the fence? Answer yes or no.", "Is the gate open? Answer yes or no."]


def test_precomputed_positions_give_the_models_own_answers(tiny_model: Path) -> None:
    backend = TransformersBackend.load(str(tiny_model), device="cpu")
    # Two image sizes and two questions: rows of different lengths, so the shorter one is left-padded.
    prompts = [Prompt(random_image(40, 320, 200), QUESTIONS[0]), Prompt(random_image(41, 256, 256), QUESTIONS[1])]
    plain = backend.yes_no_inputs(prompts)
    given = backend.yes_no_inputs(prompts, positions=True)
    assert "position_ids" not in plain and given["position_ids"].shape == (3, *given["input_ids"].shape)
    assert (given["attention_mask"] == 0).any(), "the test needs a padded row"
    inner = backend.model.model
    with torch.inference_mode():
        inner.rope_deltas = None
        own = backend.model(**plain, logits_to_keep=1, use_cache=False).logits[:, -1]
        own_deltas = inner.rope_deltas
        inner.rope_deltas = None
        ours = backend.model(**given, logits_to_keep=1, use_cache=False).logits[:, -1]
        assert inner.rope_deltas is None, "the model must have taken the positions as given"
    assert torch.allclose(own, ours, atol=1e-5), (own - ours).abs().max()
    assert torch.equal(rope_deltas(given["position_ids"], given["attention_mask"]), own_deltas)
    # Other positions (here: the temporal axis copied onto height and width) change the answer, so the
    # check above can fail. (A shift of every position by one would not: RoPE sees only differences.)
    shifted = dict(given) | {"position_ids": given["position_ids"][:1].expand(3, -1, -1)}
    with torch.inference_mode():
        moved = backend.model(**shifted, logits_to_keep=1, use_cache=False).logits[:, -1]
    assert not torch.allclose(own, moved, atol=1e-5)


def test_inputs_without_images_are_left_to_the_model(tiny_model: Path) -> None:
    backend = TransformersBackend.load(str(tiny_model), device="cpu")
    text_only = backend.processor.tokenizer(["Is the gate open?"], return_tensors="pt")
    assert add_positions(backend.model, text_only) is False
    assert "position_ids" not in text_only
    assert add_positions(torch.nn.Linear(2, 2), {"input_ids": torch.ones(1, 2), "image_grid_thw": None}) is False
