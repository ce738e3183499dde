"""Train a VLM on (image, question, answer) examples: the demo model from scratch, and the base that
fine-tuning a real checkpoint reuses (same prompts, answer format and loss as the service's backend).

The prompt is rendered exactly as the transformers backend renders it at inference (chat template,
thinking off); the target is the answer wrapped as the model family answers (GLM: in a box), then the
end-of-text token. Only the target tokens carry loss. Runs on the CPU in float32, seeded: the same
seed, steps and examples give the same weights.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from streamwatch.learning.finetune.example import TrainingExample
from streamwatch.learning.finetune.objective import answer_loss, answer_suffix, encode, optimise
from streamwatch.vlm.prompts import prompt_style


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 2400
    batch: int = 32
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    max_image_side: int = 640  # as the shipped config feeds the model
    log_every: int = 50
    # Parameters (name prefixes) kept at their seeded random initialisation. Trained from scratch with
    # the rest, GLM-4V's vision encoder (patch embedding, position embedding, ViT blocks) drifts within
    # a few steps, even at a tenth of the learning rate, so that the language model stops reading the
    # image tokens; frozen, its random features keep what a patch shows (a random projection of the
    # pixels, mixed by residual blocks) and the trained projector (downsample + merger) and language
    # model learn to read them. Fine-tuning a pretrained checkpoint passes () or its own choice.
    freeze: tuple[str, ...] = (
        "model.visual.patch_embed",
        "model.visual.embeddings",
        "model.visual.blocks",
        "model.visual.post_conv_layernorm",
    )


class Batches:
    """Encodes example batches in a background thread (one, so the order is fixed) while the model trains."""

    def __init__(self, processor: Any, examples: Iterator[TrainingExample], settings: TrainSettings) -> None:
        self.processor = processor
        self.style = prompt_style(processor)
        self.suffix = answer_suffix(self.style, processor.tokenizer)
        self.examples = examples
        self.settings = settings
        self.ready: queue.Queue[dict[str, Any] | BaseException] = queue.Queue(maxsize=3)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._fill, name="train-batches", daemon=True)
        self.thread.start()

    def _fill(self) -> None:
        try:
            while not self.stopped.is_set():
                batch = [next(self.examples) for _ in range(self.settings.batch)]
                self.ready.put(encode(self.processor, self.style, self.suffix, batch, self.settings.max_image_side))
        except BaseException as exc:  # handed to the training loop, which raises it
            self.ready.put(exc)

    def next(self) -> dict[str, Any]:
        item = self.ready.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.stopped.set()
        while not self.ready.empty():
            self.ready.get_nowait()


def train(
    model: Any,
    next_batch: Callable[[], dict[str, Any]],
    settings: TrainSettings,
    progress: Callable[[int, float, float], None] | None = None,
) -> list[tuple[int, float]]:
    """Train in place on `next_batch()` (model inputs plus `target_mask`, as `encode` makes them); returns
    (step, mean loss) every `log_every` steps. `progress(step, loss, seconds)`."""
    torch.manual_seed(settings.seed)
    model.train()
    named = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not name.startswith(settings.freeze))
        if parameter.requires_grad:
            named.append((name, parameter))
    decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    try:
        return optimise(groups, settings, lambda: answer_loss(model, next_batch()), progress)
    finally:
        model.eval()
