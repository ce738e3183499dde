"""`streamwatch model make-tiny` writes checkpoints that load like real ones from the hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

from streamwatch.vlm.processor import VideoUnsupported, load_processor
from streamwatch.vlm.prompts import prompt_style

GLM_SPECIALS = [
    "<|begin_of_image|>",
    "<|image|>",
    "<|end_of_image|>",
    "<|begin_of_box|>",
    "<|end_of_box|>",
    "[gMASK]",
    "<sop>",
    "<|user|>",
    "<|assistant|>",
    "<think>",
    "</think>",
]


def test_glm4v_checkpoint_has_the_real_layout(tiny_glm4v: Path) -> None:
    config = AutoConfig.from_pretrained(tiny_glm4v)
    assert config.model_type == "glm4v"
    text = config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert text.rope_parameters["partial_rotary_factor"] == 0.5
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 4
    tokenizer = AutoTokenizer.from_pretrained(tiny_glm4v)
    for token in GLM_SPECIALS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1, f"{token} must be one token"
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image|>")
    assert config.image_start_token_id == tokenizer.convert_tokens_to_ids("<|begin_of_image|>")
    assert json.loads((tiny_glm4v / "streamwatch_tiny.json").read_text())["family"] == "glm4v"


def test_auto_classes_load_both_families(tiny_model: Path) -> None:
    model = AutoModelForImageTextToText.from_pretrained(tiny_model)
    assert model.config.model_type in ("glm4v", "qwen2_vl")
    processor = load_processor(str(tiny_model))
    assert processor.tokenizer.padding_side == "left"


def test_images_only_processor_refuses_videos(tiny_glm4v: Path) -> None:
    processor = load_processor(str(tiny_glm4v))
    video = getattr(processor, "video_processor", None)
    if not isinstance(video, VideoUnsupported):
        pytest.skip("torchvision is installed: the checkpoint's own video processor is used")
    with pytest.raises(RuntimeError, match="torchvision"):
        video([])


def test_glm_prompt_turns_thinking_off_and_opens_the_answer_box(tiny_glm4v: Path) -> None:
    processor = load_processor(str(tiny_glm4v))
    style = prompt_style(processor)
    text = style.render(processor, "Is the gate open? Answer yes or no.")
    assert text.startswith("[gMASK]<sop><|user|>")
    assert "<|begin_of_image|><|image|><|end_of_image|>Is the gate open?" in text
    assert text.endswith("<|assistant|>\n<think></think>\n")
    assert style.answer_prefix == "<|begin_of_box|>"


def test_qwen_prompt_is_chatml_without_thinking_options(tiny_qwen2vl: Path) -> None:
    processor = load_processor(str(tiny_qwen2vl))
    style = prompt_style(processor)
    assert style.template_kwargs == {}
    assert style.answer_prefix == ""
    text = style.render(processor, "Is the gate open?")
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text


def test_same_seed_same_weights(tmp_path: Path) -> None:
    from streamwatch.tools.tiny import make_tiny

    a = make_tiny(tmp_path / "a", "glm4v", seed=3)
    b = make_tiny(tmp_path / "b", "glm4v", seed=3)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_unknown_family_is_refused(tmp_path: Path) -> None:
    from streamwatch.tools.tiny import make_tiny

    with pytest.raises(ValueError, match="unknown family 'llava'"):
        make_tiny(tmp_path, "llava")
