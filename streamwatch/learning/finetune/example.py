"""One training example: an image, the question asked about it and the answer taught (fine-tuning's
labelled examples and the demo model's generated scenes alike)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrainingExample:
    image: np.ndarray  # RGB
    question: str
    answer: str  # "yes" / "no", a number or a choice
    rule: str
