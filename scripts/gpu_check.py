"""CUDA smoke check of the transformers backend (run on a GPU machine: `python scripts/gpu_check.py`).

Builds tiny GLM-4V and Qwen2-VL models, loads them with device=auto (bf16 on CUDA) and checks that
the checkpoint's own AutoProcessor is used where torchvision exists, that batched yes/no scores match
unbatched ones within bf16 tolerance, and that generation runs. Prints one line per family.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.types import Prompt
from streamwatch.vlm.processor import VideoUnsupported
from streamwatch.tools.tiny import make_tiny


def main() -> int:
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda {torch.cuda.is_available()}")
    rng = np.random.default_rng(0)
    sizes = [(1280, 720), (640, 360), (320, 320), (200, 500)]
    prompts = [
        Prompt(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), f"Is object {i} present? Answer yes.")
        for i, (w, h) in enumerate(sizes)
    ]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for family in ("glm4v", "qwen2_vl"):
            path = make_tiny(Path(tmp) / family, family)
            backend = TransformersBackend(str(path), device="auto", max_image_side=448)
            own_processor = not isinstance(getattr(backend.processor, "video_processor", None), VideoUnsupported)
            started = time.monotonic()
            together = [s.p_yes for s in backend.score_yes_no(prompts)]
            batch_ms = (time.monotonic() - started) * 1000
            alone = [backend.score_yes_no([p])[0].p_yes for p in prompts]
            worst = max(abs(a - b) for a, b in zip(together, alone, strict=True))
            texts = backend.generate(prompts, max_new_tokens=4)
            ok = worst < 2e-2 and len(texts) == len(prompts)
            failures += not ok
            print(
                f"{family}: device={backend.device} dtype={backend.dtype} own_processor={own_processor} "
                f"batch4_ms={batch_ms:.1f} max|batched-unbatched|={worst:.2e} generate={texts!r} ok={ok}"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
