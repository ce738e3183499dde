"""Faster equivalents of slow pieces of transformers' VLM code, swapped in after loading.

Measured on the GLM-4.6V-Flash-sized model (bench/levers-*.md): transformers' RMSNorm runs as five
fp32 elementwise kernels (cast, square, mean, scale, cast back) and the vision patch embedding as a
3-D convolution whose kernel equals its stride (cuDNN picks a slow implicit-GEMM kernel for it).
`fuse_rms_norms` and `linear_patch_embeddings` replace them with one fused kernel and one matmul that
compute the same function; `quantize_fp8` trades a little precision for FP8 tensor-core matmuls.
Each has a CPU test against the unmodified model (tests/inference/test_kernels.py).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)
_SWAPPED = "_streamwatch_swapped"  # set on a module whose forward was replaced (a second call skips it)


def fuse_rms_norms(model: nn.Module) -> int:
    """Run every `*RMSNorm` (weight x x / rms(x), fp32 inside) as torch's fused `rms_norm`."""
    count = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        eps = getattr(module, "variance_epsilon", None)
        if getattr(module, _SWAPPED, False) or not type(module).__name__.endswith("RMSNorm"):
            continue
        if isinstance(weight, nn.Parameter) and eps is not None:
            module.forward = _rms_norm_forward(weight, float(eps))
            setattr(module, _SWAPPED, True)
            count += 1
    return count


def _rms_norm_forward(weight: nn.Parameter, eps: float) -> Any:
    def forward(hidden_states: torch.Tensor) -> torch.Tensor:
        shape = (hidden_states.shape[-1],)
        if weight.dtype == hidden_states.dtype:
            return nn.functional.rms_norm(hidden_states, shape, weight, eps)
        return weight * nn.functional.rms_norm(hidden_states, shape, None, eps)

    return forward


def linear_patch_embeddings(model: nn.Module) -> int:
    """Run vision patch embeddings (a Conv3d/Conv2d whose kernel equals its stride, applied to flattened
    patches, as in GLM-4V and Qwen2-VL) as one matmul over the flattened patch."""
    count = 0
    for module in model.modules():
        proj = getattr(module, "proj", None)
        if not isinstance(proj, nn.Conv3d | nn.Conv2d) or not type(module).__name__.endswith("PatchEmbed"):
            continue
        if getattr(module, _SWAPPED, False):
            continue
        if tuple(proj.kernel_size) != tuple(proj.stride) or any(p != 0 for p in proj.padding) or proj.groups != 1:
            continue
        module.forward = _linear_patch_forward(proj, module.forward)
        setattr(module, _SWAPPED, True)
        count += 1
    return count


def _linear_patch_forward(proj: nn.Conv3d | nn.Conv2d, original: Any) -> Any:
    def forward(hidden_states: torch.Tensor) -> torch.Tensor:
        weight = proj.weight.view(proj.out_channels, -1)
        if hidden_states.dim() != 2 or hidden_states.shape[1] != weight.shape[1]:
            result: torch.Tensor = original(hidden_states)  # not flattened patches: the module's own forward
            return result
        return nn.functional.linear(hidden_states.to(weight.dtype), weight, proj.bias)

    return forward


class Fp8Linear(nn.Module):
    """y = x W^T + b with W stored in FP8 (e4m3, one scale per output row) and x quantised per row on
    the fly; the product runs on FP8 tensor cores (`torch._scaled_mm`), the result in x's dtype."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach()
        scale = weight.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # _scaled_mm wants the second operand column-major: keep W (out, in) row-major and pass W^T.
        self.weight = nn.Parameter((weight.float() / scale).to(FP8), requires_grad=False)
        self.weight_scale = nn.Parameter(scale.t().contiguous(), requires_grad=False)  # (1, out)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features)
        scale = flat.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
        quantised = (flat.float() / scale).to(FP8)
        out = torch._scaled_mm(
            quantised,
            self.weight.t(),
            scale_a=scale,
            scale_b=self.weight_scale,
            bias=self.bias,
            out_dtype=x.dtype,
        )
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8=e4m3 rowwise"


def quantize_fp8(model: nn.Module, parts: tuple[str, ...] = ("language_model", "visual")) -> int:
    """Swap the linear layers inside the named submodules (not the embeddings or the LM head) for
    Fp8Linear. Needs FP8 tensor cores on CUDA (Hopper, Ada: compute capability 8.9+); runs on CPU too."""
    count = 0
    for part in parts:
        root = next((m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] == part), None)
        if root is None:
            continue
        for module in list(root.modules()):
            for child_name, child in list(module.named_children()):
                if type(child) is nn.Linear and child.in_features % 16 == 0 and child.out_features % 16 == 0:
                    setattr(module, child_name, Fp8Linear(child))
                    count += 1
        log.debug("quantised %s to fp8", part)
    return count


def restore_modules(model: nn.Module) -> int:
    """Undo fuse_rms_norms / linear_patch_embeddings: transformers' own forwards again (benchmarks)."""
    count = 0
    for module in model.modules():
        if getattr(module, _SWAPPED, False):
            del module.forward
            delattr(module, _SWAPPED)
            count += 1
    return count


def fp8_supported(device: torch.device) -> bool:
    if device.type == "cpu":
        return True
    if device.type != "cuda":
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


def compile_layers(model: Any, mode: str | None = None, *, dynamic: bool = True) -> int:
    """torch.compile every vision block and decoder layer (fuses the norms, rotary embeddings and
    elementwise work around the matmuls); shapes vary with batch and image size, so dynamic unless
    told otherwise (benchmarks of one fixed batch). Returns how many modules were compiled.

    One compiled code object serves all layers, but transformers' code makes dynamo guard on things
    that differ per call: each layer's KV-cache slot (cached passes: describe questions, shared
    images) and the number of images in a batch (vision attention loops over them). Dynamo's default
    of 8 variants per function then sends every later variant to eager mode, so the limit is raised
    to cover one variant per layer for each kind of pass (no cache; prefill; one-token decode; question
    suffixes after a shared image; a batch of one or more), each compiled once, at first use. (At
    2 x layers, one `generate` used the limit up and the yes/no passes after it ran eager.)"""
    layers = 0
    compiled = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.endswith(("blocks", "layers")):
            layers = max(layers, len(module))
            for layer in module:
                layer.compile(dynamic=dynamic, mode=mode)
                compiled += 1
    limit = max(64, 8 * layers + 16)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, 16 * limit)
    log.info("compiled %d layers", compiled)
    return compiled
