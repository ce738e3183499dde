"""LoRA adapters of the shipped demo model, made in a test's folder."""

from __future__ import annotations

from pathlib import Path

import torch

from support.helpers import REPO


def make_adapter(out: Path, harm: float) -> Path:
    """A LoRA adapter of the demo model: fresh (it changes nothing), or with its B factors drawn at
    random with the scale `harm` (seeded), which moves every answer."""
    from transformers import AutoModelForImageTextToText

    from streamwatch.learning.finetune.lora import add_lora, save_adapter
    from streamwatch.learning.finetune.settings import LoraSettings

    model = add_lora(AutoModelForImageTextToText.from_pretrained(str(REPO / "models" / "demo-glm4v")), LoraSettings())
    if harm:
        generator = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for name, weight in model.named_parameters():
                if "lora_B" in name:
                    weight.copy_(torch.randn(weight.shape, generator=generator) * harm)
    save_adapter(model, out)
    return out
