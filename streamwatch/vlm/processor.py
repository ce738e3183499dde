"""Load a checkpoint's processor, also where torchvision is missing.

transformers' multimodal processors (GLM-4V, Qwen2-VL, ...) insist on a video processor, and every
video processor requires torchvision, which has no CPU wheel on some machines (this project's CI
among them). streamwatch only ever sends still images, so when `AutoProcessor` fails for that one
reason we assemble the checkpoint's own processor class from its image processor and tokenizer, with
a placeholder in the video slot that refuses videos with a clear message.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

log = logging.getLogger(__name__)

_IMAGE_TEXT_VIDEO = {"image_processor", "tokenizer", "video_processor"}


class VideoUnsupported:
    """Stands in for a video processor where torchvision is unavailable; streamwatch sends no videos."""

    def __init__(self, image_processor: Any) -> None:
        for name in ("merge_size", "patch_size", "temporal_patch_size"):
            if hasattr(image_processor, name):
                setattr(self, name, getattr(image_processor, name))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("video input needs torchvision; streamwatch sends single frames as images")

    def to_dict(self) -> dict[str, Any]:
        return {}


def pad_left(tokenizer: Any) -> None:
    """Batches pad on the left, so the last position of every row is where its answer starts (scoring,
    generation, training); a tokenizer without a pad token pads with its end-of-text token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def load_processor(model_id: str) -> Any:
    """`AutoProcessor.from_pretrained(model_id)`, or its images-only equivalent without torchvision."""
    try:
        return AutoProcessor.from_pretrained(model_id)
    except ImportError as exc:
        if "torchvision" not in str(exc).lower():
            raise
        log.info("torchvision is not installed: building an images-only processor for %s", model_id)
        return images_only_processor(model_id)


def images_only_processor(model_id: str) -> Any:
    config = AutoConfig.from_pretrained(model_id)
    class_name = PROCESSOR_MAPPING_NAMES.get(config.model_type)
    if class_name is None:
        raise ValueError(f"{model_id}: model type {config.model_type!r} has no multimodal processor")
    processor_cls = getattr(transformers, class_name)
    attributes = set(processor_cls.get_attributes())
    if not attributes <= _IMAGE_TEXT_VIDEO:
        raise ImportError(f"{class_name} needs {sorted(attributes)}; install torchvision to use {model_id}")

    image_processor = AutoImageProcessor.from_pretrained(model_id)
    parts: dict[str, Any] = {
        "image_processor": image_processor,
        "tokenizer": AutoTokenizer.from_pretrained(model_id),
    }
    if "video_processor" in attributes:
        parts["video_processor"] = VideoUnsupported(image_processor)

    class ImagesOnly(processor_cls):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if isinstance(argument, VideoUnsupported):
                return VideoUnsupported
            return super().check_argument_for_proper_class(argument_name, argument)

    ImagesOnly.__name__ = ImagesOnly.__qualname__ = processor_cls.__name__
    return ImagesOnly(**parts, chat_template=_chat_template(model_id, parts["tokenizer"]))


def _chat_template(model_id: str, tokenizer: Any) -> str | None:
    """The processor-level chat template file, else the tokenizer's own template."""
    local = Path(model_id) / "chat_template.jinja"
    if local.is_file():
        return local.read_text(encoding="utf-8")
    if not Path(model_id).exists():
        from transformers.utils import cached_file

        found = cached_file(model_id, "chat_template.jinja", _raise_exceptions_for_missing_entries=False)
        if found:
            return Path(found).read_text(encoding="utf-8")
    template = getattr(tokenizer, "chat_template", None)
    return template if isinstance(template, str) else None
