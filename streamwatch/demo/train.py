"""Train a VLM on (image, question, answer) examples: the demo model from scratch, and the base that
fine-tuning a real checkpoint reuses (same prompts, answer format and loss as the service's backend).

The prompt is rendered exactly as the transformers backend renders it at inference (chat template,
thinking off); the target is the answer wrapped as the model family answers (GLM: in a box), then the
end-of-text token. Only the target tokens carry loss. Runs on the CPU in float32, seeded: the same
seed, steps and examples give the same weights.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from PIL import Image

from streamwatch.demo.dataset import Example
from streamwatch.ingest.preprocess import fit_longest_side
from streamwatch.vlm.prompts import PromptStyle, prompt_style


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

    def __init__(self, processor: Any, examples: Iterator[Example], settings: TrainSettings) -> None:
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


def answer_suffix(style: PromptStyle, tokenizer: Any) -> str:
    """What ends an answer: the box's closing tag where answers are boxed, then end of text."""
    close = "<|end_of_box|>" if style.answer_prefix == "<|begin_of_box|>" else ""
    return close + str(tokenizer.eos_token)


def answer_target(style: PromptStyle, suffix: str, answer: str) -> str:
    """The text the model is trained to produce after the prompt."""
    return f"{style.answer_prefix}{answer}{suffix}"


def encode(
    processor: Any, style: PromptStyle, suffix: str, batch: Sequence[Example], max_image_side: int
) -> dict[str, Any]:
    """Model inputs plus `target_mask`: which positions' next token is an answer token (left padding puts
    every row's answer at the end)."""
    images = [fit_longest_side(Image.fromarray(ex.image), max_image_side) for ex in batch]
    targets = [answer_target(style, suffix, ex.answer) for ex in batch]
    texts = [style.render(processor, ex.question) + target for ex, target in zip(batch, targets, strict=True)]
    inputs = dict(processor(images=images, text=texts, return_tensors="pt", padding=True))
    inputs["target_mask"] = target_mask(
        [len(processor.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in targets]
    )
    return inputs


def target_mask(lengths: Sequence[int]) -> torch.Tensor:
    """(rows, longest target) bool: which of the last positions predict a target token, for rows whose
    targets (`lengths` tokens each) end every left-padded row."""
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.bool)
    for row, length in enumerate(lengths):
        mask[row, mask.shape[1] - length :] = True
    return mask


def answer_loss(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """Cross-entropy of the answer tokens only (logits kept for the last few positions)."""
    mask = inputs["target_mask"]
    keep = mask.shape[1] + 1
    model_inputs = {k: v for k, v in inputs.items() if k != "target_mask"}
    logits = model(**model_inputs, logits_to_keep=keep, use_cache=False).logits[:, :-1, :]
    targets = model_inputs["input_ids"][:, -(keep - 1) :]
    return torch.nn.functional.cross_entropy(logits[mask].float(), targets[mask])


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


class Schedule(Protocol):
    """What `optimise` needs of a stage's settings."""

    @property
    def steps(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def warmup(self) -> int: ...
    @property
    def log_every(self) -> int: ...


def optimise(
    groups: list[dict[str, Any]],
    schedule: Schedule,
    step_loss: Callable[[], torch.Tensor],
    progress: Callable[[int, float, float], None] | None = None,
) -> list[tuple[int, float]]:
    """The training loop every stage shares: AdamW over the parameter `groups`, warm-up then cosine decay,
    gradients clipped at norm 1, `step_loss()` per step. Returns (step, mean loss) every `log_every`
    steps and at the end; `progress(step, loss, seconds)` is called with each."""
    trained = [p for group in groups for p in group["params"]]
    optimiser = torch.optim.AdamW(groups, lr=schedule.lr, betas=(0.9, 0.98))
    rate = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: lr_factor(step, schedule.warmup, schedule.steps))
    history: list[tuple[int, float]] = []
    started, total = time.monotonic(), 0.0
    for step in range(1, schedule.steps + 1):
        loss = step_loss()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimiser.step()
        rate.step()
        total += float(loss.detach())
        if step % schedule.log_every == 0 or step == schedule.steps:
            count = schedule.log_every if step % schedule.log_every == 0 else step % schedule.log_every
            history.append((step, total / count))
            total = 0.0
            if progress:
                progress(step, history[-1][1], time.monotonic() - started)
    return history


def lr_factor(step: int, warmup: int, steps: int) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < warmup:
        return (step + 1) / warmup
    done = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
