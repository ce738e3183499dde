"""Train a LoRA adapter (peft) on training examples: the same prompts, answer format and loss as the
demo model's training (demo/train.py), only the adapter's low-rank weights trained, seeded."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from streamwatch.learning.finetune.augment import jitter
from streamwatch.learning.finetune.example import TrainingExample
from streamwatch.learning.finetune.objective import answer_loss, answer_suffix, encode, optimise
from streamwatch.learning.finetune.settings import LoraSettings
from streamwatch.vlm.prompts import prompt_style

# The language model's attention and MLP projections, the vision tower's and its projector's (GLM-4V's
# names; Qwen2-VL's language model matches the first part): the demo model's mistakes are in what its
# vision tower makes of a picture, so the adapter reaches there too.
TARGET_MODULES = (
    r".*(language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|gate_up_proj|down_proj)"
    r"|visual\.merger\.(proj|gate_proj|up_proj|down_proj)"
    r"|visual\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.gate_proj|mlp\.up_proj|mlp\.down_proj))"
)


def add_lora(model: Any, settings: LoraSettings) -> Any:
    """`model` wrapped by peft with fresh LoRA weights (zero effect until trained) on TARGET_MODULES."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(settings.seed)
    config = LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0, target_modules=TARGET_MODULES, bias="none"
    )
    return get_peft_model(model, config)


def train_lora(
    model: Any,
    processor: Any,
    examples: Sequence[TrainingExample],
    settings: LoraSettings,
    progress: Callable[[int, float, float], None] | None = None,
) -> list[tuple[int, float]]:
    """Train the LoRA weights of a peft-wrapped `model` (add_lora) in place on `examples`, drawn in
    shuffled rounds; returns (step, mean loss) every `log_every` steps."""
    if not examples:
        raise ValueError("no training examples")
    style = prompt_style(processor)
    suffix = answer_suffix(style, processor.tokenizer)
    order = random.Random(settings.seed)
    pool: list[TrainingExample] = []

    def next_batch() -> dict[str, Any]:
        batch = []
        for _ in range(min(settings.batch, len(examples))):
            if not pool:
                pool.extend(examples)
                order.shuffle(pool)
            batch.append(jitter(pool.pop(), order) if settings.augment else pool.pop())
        inputs = encode(processor, style, suffix, batch, settings.max_image_side)
        device = next(model.parameters()).device
        return {key: value.to(device) if hasattr(value, "to") else value for key, value in inputs.items()}

    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    torch.manual_seed(settings.seed)
    model.train()
    try:
        return optimise(
            [{"params": trained, "weight_decay": 0.0}], settings, lambda: answer_loss(model, next_batch()), progress
        )
    finally:
        model.eval()


def save_adapter(model: Any, out: Path) -> None:
    """The adapter's files (adapter_config.json, adapter_model.safetensors) into `out`."""
    model.save_pretrained(str(out))
