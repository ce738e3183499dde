"""Image preprocessing in torch (vlm/torch_images.py) matches the checkpoint's own processor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.helpers import random_image

from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.types import Prompt
from streamwatch.vlm.processor import load_processor
from streamwatch.vlm.torch_images import TorchImages, with_torch_images

CPU = torch.device("cpu")


def _texts(processor: object, count: int) -> list[str]:
    token = processor.image_token  # type: ignore[attr-defined]
    special = str(processor.tokenizer.all_special_tokens)  # type: ignore[attr-defined]
    begin, end = (
        ("<|begin_of_image|>", "<|end_of_image|>") if "begin" in special else ("<|vision_start|>", "<|vision_end|>")
    )
    return [f"{begin}{token}{end} Is the gate open?"] * count


def test_same_tokens_and_nearly_the_same_pixels_as_the_checkpoint_processor(tiny_model: Path) -> None:
    processor = load_processor(str(tiny_model))
    torch_processor = with_torch_images(processor, device=CPU, dtype=torch.float32, max_image_side=1280)
    assert torch_processor is not None and isinstance(torch_processor.image_processor, TorchImages)
    assert processor.image_processor is not torch_processor.image_processor  # the shared processor is untouched
    images = [random_image(1, 320, 200), random_image(2, 256, 256), random_image(3, 640, 360)]
    texts = _texts(processor, len(images))
    expected = processor(images=images, text=texts, return_tensors="pt", padding=True)
    got = torch_processor(images=images, text=texts, return_tensors="pt", padding=True)
    assert sorted(got.keys()) == sorted(expected.keys())
    for key in expected:
        if key != "pixel_values":
            assert torch.equal(got[key], expected[key]), key
    difference = (got["pixel_values"] - expected["pixel_values"]).abs()
    assert got["pixel_values"].shape == expected["pixel_values"].shape
    assert difference.mean() < 0.01  # bicubic of PIL and of torch differ by rounding at most pixels


def test_patch_layout_is_exact_where_no_resize_is_needed(tiny_model: Path) -> None:
    processor = load_processor(str(tiny_model))
    images = TorchImages(processor.image_processor, device=CPU, dtype=torch.float32, max_image_side=1280)
    image = random_image(4, 168, 140)  # on the 28-pixel grid and inside both families' pixel limits
    assert images.target_size(168, 140) == (140, 168)
    expected = processor.image_processor(images=[image], return_tensors="pt")
    got = images([image])
    assert torch.equal(got["image_grid_thw"], expected["image_grid_thw"])
    assert torch.allclose(got["pixel_values"], expected["pixel_values"], atol=1e-5)


def test_large_frames_are_fitted_like_the_cpu_path(tiny_glm4v: Path) -> None:
    processor = load_processor(str(tiny_glm4v))
    images = TorchImages(processor.image_processor, device=CPU, dtype=torch.float32, max_image_side=100)
    big = Image.fromarray(np.full((1000, 2000, 3), 128, dtype=np.uint8))
    cpu = TransformersBackend.load(str(tiny_glm4v), device="cpu", max_image_side=100, preprocess="processor")
    expected = cpu._inputs([Prompt(big, "Is it day?")])
    assert torch.equal(images([big])["image_grid_thw"], expected["image_grid_thw"])
    assert torch.equal(images([np.asarray(big)])["image_grid_thw"], expected["image_grid_thw"])  # arrays too
    with pytest.raises(ValueError, match=r"expected an RGB uint8 image \(H, W, 3\), got uint8 \(10, 10\)"):
        images([np.zeros((10, 10), dtype=np.uint8)])
    gray = images([big.convert("L")])  # other PIL modes are converted
    assert gray["pixel_values"].shape == images([big])["pixel_values"].shape


def test_backend_answers_agree_with_either_preprocessing(tiny_model: Path) -> None:
    on_cpu = TransformersBackend.load(str(tiny_model), device="cpu", preprocess="processor")
    in_torch = TransformersBackend.load(str(tiny_model), device="cpu", preprocess="torch")
    assert on_cpu.torch_processor is None and in_torch.torch_processor is not None
    gate, yard = random_image(5, 320, 200), random_image(6, 400, 300)
    prompts = [Prompt(gate, "Is the gate open?"), Prompt(gate, "Is a person there?"), Prompt(yard, "Is it day?")]
    expected = [a.p_yes for a in on_cpu.score_yes_no(prompts)]  # shared-image path (two questions, one frame)
    assert [a.p_yes for a in in_torch.score_yes_no(prompts)] == pytest.approx(expected, abs=0.02)
    single = [prompts[0], prompts[2]]  # plain path
    assert [a.p_yes for a in in_torch.score_yes_no(single)] == pytest.approx(
        [a.p_yes for a in on_cpu.score_yes_no(single)], abs=0.02
    )
    assert in_torch.generate([prompts[2]], 4) == in_torch.generate([prompts[2]], 4)


def test_processors_without_this_layout_are_left_alone() -> None:
    class Other:
        image_processor = object()

    assert with_torch_images(Other(), device=CPU, dtype=torch.float32, max_image_side=1280) is None
    assert not TorchImages.supports(object())
