"""Labelled examples as training examples, and the seeded split into training and held-out parts.

The split is decided per example from a hash of the seed and where the example came from (its event,
label request or clip time), so the same examples always fall on the same side, and the held-out part
can be read again from the store (its frames are never all kept in memory).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from streamwatch.config import CameraConfig
from streamwatch.ingest.preprocess import fit_longest_side
from streamwatch.learning.evaluation.examples import Example, example_key
from streamwatch.learning.evaluation.replay import prepare
from streamwatch.learning.finetune.example import TrainingExample
from streamwatch.rules.model import Rule


def held_out(example: Example, fraction: float, seed: int) -> bool:
    """Whether `example` belongs to the held-out part (about `fraction` of all examples)."""
    digest = hashlib.sha256(f"{seed}\0{example.source}\0{example.ref}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def held_out_only(examples: Iterable[Example], fraction: float, seed: int) -> Iterator[Example]:
    return (example for example in examples if held_out(example, fraction, seed))


def training_examples(
    examples: Iterable[Example],
    rules: Mapping[str, Rule],
    cameras: Mapping[str, CameraConfig],
    *,
    fraction: float,
    seed: int,
    max_image_side: int,
    limit: int,
    skipped: Counter[str],
    keys: list[str] | None = None,
) -> list[TrainingExample]:
    """The training part as the model is asked it (question rendered, roi cropped), each image already at
    the model's size (memory: `limit` examples at most, the rest counted in `skipped`); `keys` gets the
    example_key of each one kept."""
    kept: list[TrainingExample] = []
    for example in examples:
        if held_out(example, fraction, seed):
            continue
        prepared = prepare(example, rules, cameras)
        if isinstance(prepared, str):
            skipped[prepared] += 1
            continue
        if len(kept) >= limit:
            skipped[f"more than --max-examples {limit}"] += 1
            continue
        rule, _camera, prompt = prepared
        if rule.answer != "yes_no":
            skipped[f"rule {rule.id}: a {rule.answer} rule (fine-tuning learns yes/no answers)"] += 1
            continue
        if prompt.frames:
            skipped[f"rule {rule.id}: asks over {rule.frames} frames (fine-tuning learns single-frame answers)"] += 1
            continue
        image = np.asarray(fit_longest_side(prompt.image.convert("RGB"), max_image_side))
        kept.append(TrainingExample(image, prompt.question, "yes" if example.truth else "no", rule.id))
        if keys is not None:
            keys.append(example_key(example))
    return kept
