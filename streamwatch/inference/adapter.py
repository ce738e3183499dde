"""LoRA adapters (`peft`) on a transformers model: checked, loaded and merged into the weights, so the
adapted model runs the same code (batching, shared image passes, kernels) at the same speed as the base.

An adapter directory is what `peft` writes (`streamwatch model finetune` included): adapter_config.json
and adapter_model.safetensors. Everything that can be wrong with one is an `AdapterError` naming the
directory and what is wrong, never a traceback from deep inside peft.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamwatch.errors import AdapterError

CONFIG = "adapter_config.json"
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def is_empty_slot(path: Path) -> bool:
    """An existing folder with no adapter file at all: a slot waiting for an adapter (the model runs
    alone until one is written there, e.g. applied from a fine-tune job); anything else is checked."""
    return path.is_dir() and not any((path / name).exists() for name in (CONFIG, *WEIGHTS))


def check_adapter_dir(path: Path) -> dict[str, Any]:
    """The adapter's config, once the directory holds a readable LoRA adapter; else an AdapterError."""
    if not path.is_dir():
        raise AdapterError(f"adapter {path}: no such directory")
    config_path = path / CONFIG
    if not config_path.is_file():
        raise AdapterError(f"adapter {path}: no {CONFIG} (not a peft adapter directory)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AdapterError(f"adapter {path}: {CONFIG} is not readable JSON: {exc}") from None
    if not isinstance(config, dict):
        raise AdapterError(f"adapter {path}: {CONFIG} must hold a JSON object")
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"adapter {path}: peft_type {config.get('peft_type')!r}; only LORA adapters are supported")
    if not any((path / name).is_file() for name in WEIGHTS):
        raise AdapterError(f"adapter {path}: no weights ({' or '.join(WEIGHTS)})")
    return config


def merge_adapter(model: Any, path: Path) -> Any:
    """`model` with the adapter's weights merged in (the base weights of `model` change: load a fresh
    base for each adapter). Every adapter weight must land on a module of the model."""
    check_adapter_dir(path)
    import warnings

    from peft import PeftModel

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            adapted = PeftModel.from_pretrained(model, str(path), is_trainable=False)
        missing = [str(w.message) for w in caught if "missing adapter keys" in str(w.message).lower()]
        unexpected = [str(w.message) for w in caught if "unexpected keys" in str(w.message).lower()]
        if missing or unexpected:
            raise AdapterError(f"adapter {path} does not fit this model: {_short((missing or unexpected)[0])}")
        return adapted.merge_and_unload()
    except AdapterError:
        raise
    except Exception as exc:  # peft's errors: modules not found, shapes that differ, broken safetensors
        raise AdapterError(
            f"adapter {path} cannot be applied to this model: {type(exc).__name__}: {_short(str(exc))}"
        ) from None


def _short(text: str, limit: int = 300) -> str:
    """peft's messages list every weight: the first few hundred characters say what is wrong."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + " ..."
