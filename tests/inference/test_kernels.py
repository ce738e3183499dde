"""The swapped-in kernels (inference/backends/kernels.py) compute what transformers' own modules do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.helpers import random_image
from transformers import AutoModelForImageTextToText

from streamwatch.inference.backends.kernels import (
    Fp8Linear,
    fuse_rms_norms,
    linear_patch_embeddings,
    quantize_fp8,
)
from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.types import Prompt

QUESTIONS = ["Is any person climbing the fence? Answer yes or no.", "Is the gate open? Answer yes or no."]


def _logits(backend: TransformersBackend, model: torch.nn.Module, prompts: list[Prompt]) -> torch.Tensor:
    inputs = backend.yes_no_inputs(prompts)
    with torch.inference_mode():
        logits: torch.Tensor = model(**inputs, logits_to_keep=1, use_cache=False).logits[:, -1].float()
    return logits


def _random_norm_weights(model: torch.nn.Module) -> None:
    """RMSNorm weights start as ones; make them matter (a swapped norm that drops them must fail)."""
    generator = torch.Generator().manual_seed(7)
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.weight.data = 0.5 + torch.rand(module.weight.shape, generator=generator)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def prompts() -> list[Prompt]:
    return [Prompt(random_image(30, 320, 200), QUESTIONS[0]), Prompt(random_image(31, 256, 256), QUESTIONS[1])]


def test_fused_kernels_give_the_same_logits_as_transformers_modules(tiny_model: Path, prompts: list[Prompt]) -> None:
    backend = TransformersBackend.load(str(tiny_model), device="cpu")  # loads with the kernels swapped in
    original = AutoModelForImageTextToText.from_pretrained(str(tiny_model), dtype=torch.float32).eval()
    assert fuse_rms_norms(backend.model) == 0  # already swapped at load: nothing left to swap
    _random_norm_weights(backend.model)
    _random_norm_weights(original)
    fast, plain = _logits(backend, backend.model, prompts), _logits(backend, original, prompts)
    assert torch.allclose(fast, plain, atol=1e-4), (fast - plain).abs().max()
    norms = sum(type(m).__name__.endswith("RMSNorm") for m in original.modules())
    assert norms > 0 and fuse_rms_norms(original) == norms
    assert linear_patch_embeddings(original) == 1
    assert torch.allclose(_logits(backend, original, prompts), plain, atol=1e-4)


def test_linear_patch_embedding_equals_the_convolution() -> None:
    class VisionPatchEmbed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Conv3d(3, 32, kernel_size=(2, 14, 14), stride=(2, 14, 14), bias=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.proj(x.view(-1, 3, 2, 14, 14)).view(-1, 32)
            return out

    torch.manual_seed(0)
    embed, patches = VisionPatchEmbed(), torch.randn(50, 3 * 2 * 14 * 14)
    expected = embed(patches)
    assert linear_patch_embeddings(embed) == 1
    assert torch.allclose(embed(patches), expected, atol=1e-5)
    image = torch.randn(2, 3, 2, 28, 28)  # not flattened patches: falls back to the module's own forward
    assert embed(image).shape == (8, 32)


def test_fp8_linear_is_close_to_the_bf16_product() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 128, bias=True)
    x = torch.randn(4, 7, 256)
    expected = linear(x)
    quantised = Fp8Linear(linear)
    assert quantised.weight.dtype == torch.float8_e4m3fn and quantised.weight_scale.shape == (1, 128)
    got = quantised(x)
    assert got.shape == expected.shape and got.dtype == x.dtype
    relative = (got - expected).norm() / expected.norm()
    assert 0 < relative < 0.05  # e4m3 keeps ~2 significant digits; the error is real but small


def test_fp8_model_answers_close_to_the_plain_model(tiny_glm4v: Path, prompts: list[Prompt]) -> None:
    backend = TransformersBackend.load(str(tiny_glm4v), device="cpu")
    original = AutoModelForImageTextToText.from_pretrained(str(tiny_glm4v), dtype=torch.float32).eval()
    plain = [a.p_yes for a in backend.score_yes_no(prompts)]
    linears = sum(type(m) is torch.nn.Linear for m in backend.model.model.modules())
    assert quantize_fp8(backend.model) == linears  # every linear of the vision tower and language model
    assert type(backend.model.lm_head) is torch.nn.Linear  # the head stays in full precision
    fp8 = [a.p_yes for a in backend.score_yes_no(prompts)]
    assert fp8 == pytest.approx(plain, abs=0.03)
    fast, reference = _logits(backend, backend.model, prompts), _logits(backend, original, prompts)
    assert not torch.equal(fast, reference)  # really quantised
    assert quantize_fp8(original, parts=("no_such_part",)) == 0
