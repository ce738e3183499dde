"""Build tiny models of real VLM architectures, offline, for tests and the out-of-the-box demo.

The result is an ordinary checkpoint directory (config, safetensors weights, tokenizer, image
processor, chat template): `AutoProcessor` and `AutoModelForImageTextToText` load it like any model
from the hub. Weights are random, so answers are meaningless; only shapes and code paths are real.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from streamwatch.vlm.tokenizer import build_tokenizer

GLM4V_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|image|>",
    "<|video|>",
    "<think>",
    "</think>",
    "<|begin_of_box|>",
    "<|end_of_box|>",
    "/nothink",
)

# The GLM-4.5V / 4.6V conversation layout: `[gMASK]<sop>`, role tokens, image wrapped in
# begin/end markers, and an empty think block when thinking is switched off. (transformers renders
# with trim_blocks, which eats a newline right after a block tag: those newlines are expressions.)
GLM4V_CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{% for m in messages %}"
    "{% if m.role == 'system' %}<|system|>\n{{ m.content }}"
    "{% elif m.role == 'user' %}<|user|>\n"
    "{% if m.content is string %}{{ m.content }}{% else %}{% for item in m.content %}"
    "{% if item.type == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% elif item.type == 'video' %}<|begin_of_video|><|video|><|end_of_video|>"
    "{% elif item.type == 'text' %}{{ item.text }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% elif m.role == 'assistant' %}<|assistant|>\n{{ m.content }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>"
    "{% if enable_thinking is defined and not enable_thinking %}{{ '\\n<think></think>' }}{% endif %}{{ '\\n' }}"
    "{% endif %}"
)

QWEN2VL_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

QWEN2VL_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.content is string %}{{ m.content }}{% else %}{% for item in m.content %}"
    "{% if item.type == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item.type == 'text' %}{{ item.text }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

FAMILIES = ("glm4v", "qwen2_vl")


@dataclass(frozen=True)
class TinySize:
    """Dimensions of a model; the defaults load and answer in milliseconds on a CPU."""

    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    max_pixels: int = 224 * 224
    min_pixels: int = 56 * 56
    text_intermediate: int | None = None  # default: 2 x text_hidden
    vision_intermediate: int | None = None  # default: 2 x vision_hidden
    vocab_size: int | None = None  # default: the tokenizer's size (a larger vocabulary costs real FLOPs)


# GLM-4.6V-Flash / GLM-4.1V-9B dimensions (transformers' Glm4vConfig defaults): ~9.4 B text, ~0.9 B vision.
GLM46V_FLASH = TinySize(
    text_hidden=4096,
    text_layers=40,
    text_heads=32,
    text_kv_heads=2,
    text_intermediate=13696,
    vocab_size=151552,
    vision_hidden=1536,
    vision_layers=24,
    vision_heads=12,
    vision_intermediate=13696,
    max_pixels=11_760_000,
    min_pixels=12_544,
)


def build_glm4v(
    out_dir: str | Path, size: TinySize, *, device: str = "cpu", dtype: Any = None, corpus: Iterable[str] = ()
) -> Any:
    """A GLM-4V model of `size` with random weights, built directly on `device` (nothing written but the
    tokenizer, image processor and chat template to `out_dir`, from which the processor loads). `corpus`:
    more text for the tokenizer to learn words from (the questions a model will be trained on)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(
        GLM4V_SPECIAL_TOKENS,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        chat_template=GLM4V_CHAT_TEMPLATE,
        extra_text=corpus,
    )
    tokenizer.save_pretrained(out)
    _glm4v_image_processor(size).save_pretrained(out)
    (out / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    with torch.device(device):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype or torch.float32)
        try:
            model = _glm4v_model(tokenizer, size)
        finally:
            torch.set_default_dtype(previous)
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.save_pretrained(out)
    return model


def make_tiny(out_dir: str | Path, family: str = "glm4v", *, seed: int = 0, size: TinySize | None = None) -> Path:
    """Write a tiny randomly initialised checkpoint of `family` into `out_dir` and return the path."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    size = size or TinySize()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if family == "glm4v":
        tokenizer = build_tokenizer(
            GLM4V_SPECIAL_TOKENS,
            eos_token="<|endoftext|>",
            pad_token="<|endoftext|>",
            chat_template=GLM4V_CHAT_TEMPLATE,
        )
        model = _glm4v_model(tokenizer, size)
        image_processor = _glm4v_image_processor(size)
    else:
        tokenizer = build_tokenizer(
            QWEN2VL_SPECIAL_TOKENS,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            chat_template=QWEN2VL_CHAT_TEMPLATE,
        )
        model = _qwen2vl_model(tokenizer, size)
        image_processor = _qwen2vl_image_processor(size)
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    (out / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    (out / "streamwatch_tiny.json").write_text(
        json.dumps({"family": family, "seed": seed, "note": "random weights: answers are meaningless"}),
        encoding="utf-8",
    )
    return out


def _ids(tokenizer: PreTrainedTokenizerFast, *tokens: str) -> list[int]:
    return [int(tokenizer.convert_tokens_to_ids(t)) for t in tokens]


def _glm4v_model(tokenizer: PreTrainedTokenizerFast, s: TinySize) -> Any:
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration

    head_dim = s.text_hidden // s.text_heads
    quarter = head_dim // 4  # GLM-4V rotates half of each head; mrope splits that half's frequencies
    mrope = [quarter - 2 * (quarter * 3 // 8), quarter * 3 // 8, quarter * 3 // 8]
    image, video, boi, eoi, bov, eov = _ids(
        tokenizer,
        "<|image|>",
        "<|video|>",
        "<|begin_of_image|>",
        "<|end_of_image|>",
        "<|begin_of_video|>",
        "<|end_of_video|>",
    )
    config = Glm4vConfig(
        text_config={
            "vocab_size": max(len(tokenizer), s.vocab_size or 0),
            "hidden_size": s.text_hidden,
            "intermediate_size": s.text_intermediate or s.text_hidden * 2,
            "num_hidden_layers": s.text_layers,
            "num_attention_heads": s.text_heads,
            "num_key_value_heads": s.text_kv_heads,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": mrope,
                "partial_rotary_factor": 0.5,
            },
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "depth": s.vision_layers,
            "hidden_size": s.vision_hidden,
            "num_heads": s.vision_heads,
            "intermediate_size": s.vision_intermediate or s.vision_hidden * 2,
            "out_hidden_size": s.text_hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "image_size": 112,
        },
        image_token_id=image,
        video_token_id=video,
        image_start_token_id=boi,
        image_end_token_id=eoi,
        video_start_token_id=bov,
        video_end_token_id=eov,
    )
    return Glm4vForConditionalGeneration(config).eval()


def _glm4v_image_processor(s: TinySize) -> Any:
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

    return Glm4vImageProcessorPil(size={"shortest_edge": s.min_pixels, "longest_edge": s.max_pixels})


def _qwen2vl_model(tokenizer: PreTrainedTokenizerFast, s: TinySize) -> Any:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    half = s.text_hidden // s.text_heads // 2  # Qwen2-VL rotates whole heads
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    image, video, vstart = _ids(tokenizer, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>")
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": s.text_hidden,
            "intermediate_size": s.text_hidden * 2,
            "num_hidden_layers": s.text_layers,
            "num_attention_heads": s.text_heads,
            "num_key_value_heads": s.text_kv_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "depth": s.vision_layers,
            "embed_dim": s.vision_hidden,
            "hidden_size": s.text_hidden,
            "num_heads": s.vision_heads,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=image,
        video_token_id=video,
        vision_start_token_id=vstart,
    )
    return Qwen2VLForConditionalGeneration(config).eval()


def _qwen2vl_image_processor(s: TinySize) -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(size={"shortest_edge": s.min_pixels, "longest_edge": s.max_pixels})
