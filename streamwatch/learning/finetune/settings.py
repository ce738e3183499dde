"""How a LoRA adapter is trained (steps, batch, learning rate, rank, seed, jitter): the command line's
and the jobs' defaults. Nothing heavy is imported here: the command line builds its parser from it.

The defaults were chosen on the learning-loop bench's labels (bench/learning-loop.md): 200 steps on a
hundred-odd reviewed frames memorise them (the loss falls to 1e-4) and whether the good boards the
demo model mistakes come out right is chance (worst of 5 seeds 1.5 % false alerts); 400 steps with
each draw jittered (augment.py) left at most 0.5 % (`streamwatch bench finetune-recipes`,
bench/finetune-recipes.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoraSettings:
    steps: int = 400
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 10
    rank: int = 8
    seed: int = 0
    max_image_side: int = 640
    log_every: int = 10
    augment: bool = True  # each draw of an example slightly shifted, scaled, mirrored and relit (augment.py)

    @property
    def alpha(self) -> int:
        """LoRA's scale numerator: twice the rank (the adapter's update scaled by 2 at any rank)."""
        return 2 * self.rank
