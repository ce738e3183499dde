"""Image preprocessing for GLM-4V / Qwen2-VL style models in plain torch, on the model's device.

The checkpoint's image processor resizes each frame (bicubic), rescales, normalises and cuts it into
flattened patches; on the CPU that costs 6 ms (torchvision) to 34 ms (PIL) per 720p frame, more than
the GPU spends on the frame's yes/no answer at a good batch size. `TorchImages` does the same steps
as a few batched tensor operations on the GPU (or the CPU), needs no torchvision (Jetson, CI), and
replaces the frame downscale (`max_image_side`) as well: each frame is resized once, straight to the
model's grid. Sizes come from the checkpoint's own `smart_resize`, so the token counts are exactly
those of the checkpoint's processor; pixel values agree within resampling differences (tested).

`with_torch_images` gives the checkpoint's processor with this in the image slot, so prompt rendering,
image-token expansion and every other output stay the processor's own.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BatchFeature

log = logging.getLogger(__name__)

BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, the resampling of GLM-4V's and Qwen2-VL's processors


class TorchImages:
    """Callable like the checkpoint's image processor (images -> pixel_values, image_grid_thw)."""

    def __init__(self, image_processor: Any, *, device: torch.device, dtype: torch.dtype, max_image_side: int) -> None:
        self.original = image_processor
        self.device, self.dtype, self.max_image_side = device, dtype, max_image_side
        self.patch_size = int(image_processor.patch_size)
        self.temporal_patch_size = int(image_processor.temporal_patch_size)
        self.merge_size = int(image_processor.merge_size)
        self._resize_rule = _smart_resize(image_processor)
        size = _pixel_limits(image_processor)
        self.min_pixels, self.max_pixels = size
        scale = float(getattr(image_processor, "rescale_factor", 1 / 255))
        mean = torch.tensor(image_processor.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(image_processor.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        # normalised = (pixel * scale - mean) / std = pixel * a + b
        self._a = (scale / std).to(device)
        self._b = (-mean / std).to(device)

    @classmethod
    def supports(cls, image_processor: Any) -> bool:
        """True for processors with this layout (patch/merge/temporal sizes, bicubic, smart_resize)."""
        needed = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")
        if not all(hasattr(image_processor, name) for name in needed):
            return False
        if int(getattr(image_processor, "resample", BICUBIC)) != BICUBIC:
            return False
        try:
            _smart_resize(image_processor)
            _pixel_limits(image_processor)
        except (LookupError, TypeError, ValueError):
            return False
        return True

    def __getattr__(self, name: str) -> Any:  # anything else the processor asks for: the original's
        return getattr(self.original, name)

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(height, width) the model sees: the frame fitted into max_image_side, then onto the patch grid."""
        if self.max_image_side > 0 and max(width, height) > self.max_image_side:
            scale = self.max_image_side / max(width, height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
        resized = self._resize_rule(
            height, width, self.patch_size * self.merge_size, self.temporal_patch_size, self.min_pixels, self.max_pixels
        )
        return int(resized[0]), int(resized[1])

    def __call__(self, images: Sequence[Image.Image | np.ndarray], **kwargs: Any) -> BatchFeature:
        """kwargs (the processor's images_kwargs) are ignored: the checkpoint's settings apply."""
        tensors = [_as_tensor(image) for image in images]
        targets = [self.target_size(t.shape[2], t.shape[1]) for t in tensors]
        groups: dict[tuple[tuple[int, ...], tuple[int, int]], list[int]] = {}
        for index, (tensor, target) in enumerate(zip(tensors, targets, strict=True)):
            groups.setdefault((tuple(tensor.shape), target), []).append(index)
        patches: list[torch.Tensor | None] = [None] * len(tensors)
        for (_, (height, width)), indices in groups.items():
            stacked = torch.stack([tensors[i] for i in indices]).to(self.device, non_blocking=True)
            for index, flat in zip(indices, self._patches(stacked, height, width), strict=True):
                patches[index] = flat
        grid = [[1, h // self.patch_size, w // self.patch_size] for h, w in targets]
        pixel_values = torch.cat([p for p in patches if p is not None])
        return BatchFeature({"pixel_values": pixel_values, "image_grid_thw": torch.tensor(grid, dtype=torch.long)})

    def _patches(self, images: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """uint8 (n, 3, H, W) -> (n, grid_h * grid_w, 3 * T * P * P) normalised patches in self.dtype."""
        x = images.float()
        if x.shape[-2:] != (height, width):
            x = torch.nn.functional.interpolate(
                x, size=(height, width), mode="bicubic", antialias=True, align_corners=False
            )
            x = x.round_().clamp_(0, 255)  # the checkpoint's processor resizes 8-bit images
        x = (x * self._a + self._b).to(self.dtype)
        n, p, m, t = x.shape[0], self.patch_size, self.merge_size, self.temporal_patch_size
        gh, gw = height // p, width // p
        x = x.reshape(n, 3, gh // m, m, p, gw // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
        x = x.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, t, -1, -1)  # a still image fills every time slot
        return x.reshape(n, gh * gw, 3 * t * p * p)


def with_torch_images(processor: Any, *, device: torch.device, dtype: torch.dtype, max_image_side: int) -> Any:
    """A shallow copy of `processor` whose image processor is TorchImages; None when unsupported."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None or not TorchImages.supports(image_processor):
        return None
    clone = copy.copy(processor)
    clone.image_processor = TorchImages(image_processor, device=device, dtype=dtype, max_image_side=max_image_side)
    return clone


def _as_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """HWC uint8 RGB -> CHW uint8 tensor, sharing the array's memory where it can."""
    if isinstance(image, Image.Image):
        image = np.array(image.convert("RGB") if image.mode != "RGB" else image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    if not image.flags.writeable or not image.flags.c_contiguous:
        image = np.array(image)
    return torch.from_numpy(image).permute(2, 0, 1)


def _smart_resize(image_processor: Any) -> Any:
    """The checkpoint family's own smart_resize, wrapped to one signature."""
    module = sys.modules[type(image_processor).__module__]
    rule = getattr(module, "smart_resize", None)
    if rule is None:
        raise LookupError(f"{type(image_processor).__name__} has no smart_resize")
    takes_frames = "num_frames" in rule.__code__.co_varnames[: rule.__code__.co_argcount]

    def resize(height: int, width: int, factor: int, temporal: int, min_pixels: int, max_pixels: int) -> Any:
        if takes_frames:  # GLM-4V: the still image counts as `temporal` frames
            return rule(
                num_frames=temporal,
                height=height,
                width=width,
                temporal_factor=temporal,
                factor=factor,
                min_pixels=min_pixels,
                max_pixels=max_pixels,
            )
        return rule(height=height, width=width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)

    return resize


def _pixel_limits(image_processor: Any) -> tuple[int, int]:
    size = getattr(image_processor, "size", None) or {}

    def field(name: str, fallback: str) -> Any:
        value = size.get(name) if isinstance(size, dict) else getattr(size, name, None)
        return value if value is not None else getattr(image_processor, fallback, None)

    low, high = field("shortest_edge", "min_pixels"), field("longest_edge", "max_pixels")
    if low is None or high is None:
        raise ValueError(f"{type(image_processor).__name__}: no min/max pixels in its size")
    return int(low), int(high)
