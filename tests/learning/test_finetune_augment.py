"""The fine-tune's jitter: the same size and answer, a different picture each draw, seeded, within its
bounds (a few per cent of shift and scale, a mirror image half the time, a little light)."""

from __future__ import annotations

import random

import numpy as np

from streamwatch.learning.finetune.augment import LIGHT, jitter
from streamwatch.learning.finetune.example import TrainingExample


def _board() -> TrainingExample:
    image = np.zeros((90, 160, 3), dtype=np.uint8)
    image[:, :80] = (200, 40, 40)  # red left half, blue right half: a mirror image is plain to see
    image[:, 80:] = (40, 40, 200)
    return TrainingExample(image, "Is there solder bridging two pads? Answer yes or no.", "no", "solder-bridge")


def test_a_jittered_example_keeps_its_size_question_and_answer_and_varies() -> None:
    board = _board()
    rng = random.Random(0)
    drawn = [jitter(board, rng) for _ in range(40)]
    for example in drawn:
        assert example.image.shape == board.image.shape and example.image.dtype == np.uint8
        assert (example.question, example.answer, example.rule) == (board.question, board.answer, board.rule)
    assert len({example.image.tobytes() for example in drawn}) == 40  # no two draws alike
    mirrored = sum(int(e.image[45, 10, 2]) > int(e.image[45, 10, 0]) for e in drawn)  # blue where red was
    assert 8 <= mirrored <= 32  # about half
    again = [jitter(board, random.Random(0)).image for _ in range(2)]
    assert np.array_equal(again[0], again[1]) and np.array_equal(again[0], drawn[0].image)  # seeded


def test_the_jitter_stays_within_its_bounds() -> None:
    board = _board()
    rng = random.Random(1)
    for _ in range(40):
        image = jitter(board, rng).image.astype(np.float32)
        # a tenth in from either side: still one of the two halves (at most 4 % shift, 8 % zoom)
        left, right = image[45, 16], image[45, -17]
        assert {int(np.argmax(left)), int(np.argmax(right))} == {0, 2}
        # brightness and contrast within +-LIGHT of the original's (plus the mean colour shown at edges)
        assert abs(float(image.mean()) - float(board.image.mean())) <= LIGHT * 255 + 20
