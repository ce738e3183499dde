"""The configured inference engine: the model backend and the shared queue in front of it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from streamwatch.config import Settings
from streamwatch.errors import AdapterError, StartupError
from streamwatch.inference.adapter import is_empty_slot
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.queue import InferenceQueue

log = logging.getLogger(__name__)


def build_backend(settings: Settings) -> Backend:
    """The configured model backend (loading it may take minutes for a real model)."""
    model = settings.model
    if model.backend == "openai":
        from streamwatch.inference.backends.openai import OpenAIBackend

        return OpenAIBackend(model.id, model.remote, max_image_side=model.max_image_side)
    from streamwatch.inference.backends.kernels import compile_layers
    from streamwatch.inference.backends.transformers import TransformersBackend

    adapter = settings.adapter_path()
    backend = TransformersBackend.load(
        settings.model_ref(),
        device=model.device,
        dtype=model.dtype,
        max_image_side=model.max_image_side,
        attn_implementation=model.attn_implementation,
        quantize=model.quantize,
        preprocess=model.preprocess,
        adapter=None if adapter is None or is_empty_slot(adapter) else adapter,
    )
    if model.compile:
        compile_layers(backend.model)
    return backend


def build_queue(settings: Settings, backend: Backend) -> InferenceQueue:
    model = settings.model
    return InferenceQueue(
        backend, max_batch=model.max_batch, max_wait_s=model.max_wait_ms / 1000, workers=model.workers
    )


def load_backend(settings: Settings, factory: Callable[[Settings], Backend] | None = None) -> Backend:
    """The model, or a StartupError naming `model.id` and why it cannot be loaded."""
    try:
        return (factory or build_backend)(settings)
    except AdapterError as exc:
        raise StartupError(settings.problem(("model", "adapter"), str(exc))) from None
    except Exception as exc:
        log.debug("model load failed", exc_info=True)
        raise StartupError(
            settings.problem(("model", "id"), f"cannot load the model {settings.model.id}: {type(exc).__name__}: {exc}")
        ) from None
