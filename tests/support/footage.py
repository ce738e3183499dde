"""Real footage (footage/README.md): fetched by `make install-test`; a test that needs a clip that is
not there fails saying how to fetch it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamwatch.tools.bench.footage import Footage, clip_samples, load_footage
from support.helpers import REPO

LABELS = REPO / "footage" / "labels"


def labelled(name: str) -> Footage:
    footage = load_footage(LABELS / f"{name}.toml")
    if not footage.clip.is_file():
        pytest.fail(f"{footage.clip} is missing: run `make install-test` (or scripts/fetch-footage.sh)")
    return footage


def frames(clip: Path, every_s: float) -> list[np.ndarray]:
    return [pixels for _at, pixels in clip_samples(clip, every_s)]
