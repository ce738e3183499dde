"""The still-frame tower used in training computes what transformers' GLM-4V tower computes, gradients
included, and gives the tower back unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support.helpers import REPO

from streamwatch.tools.demo.build import DEMO_SIZE
from streamwatch.tools.demo.dataset import demo_tasks
from streamwatch.tools.demo.pool import ScenePool, draw_scenes
from streamwatch.tools.demo.tower import still_frames
from streamwatch.tools.demo.vision import reinit_vision
from streamwatch.tools.tiny import build_glm4v
from streamwatch.vlm.processor import load_processor


def test_still_frames_tower_is_the_tower(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_glm4v(tmp_path, DEMO_SIZE)
    visual = model.model.visual
    reinit_vision(visual, seed=3)  # unit-scale weights: differences show
    with torch.no_grad():  # a position table far from zero, so that its resampling matters
        visual.embeddings.position_embedding.weight.normal_()
    pool = ScenePool.encode(load_processor(str(tmp_path)), draw_scenes(demo_tasks(REPO / "rules"), 3, seed=2))
    index = torch.tensor([0, 2])
    grid = pool.image_grid_thw(2)
    assert torch.equal(pool.frames(index), pool.pixel_values(index).view(-1, 3, 2, 196)[:, :, 0].reshape(-1, 588))

    def run(pixels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        visual.zero_grad()
        out = visual(pixels, grid_thw=grid).pooler_output
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out.detach(), [p.grad.clone() for p in visual.parameters() if p.grad is not None]

    reference, reference_grads = run(pool.pixel_values(index))
    assert float(reference.abs().mean()) > 0.1
    with still_frames(visual):
        for pixels in (pool.pixel_values(index), pool.frames(index)):  # both inputs are understood
            out, grads = run(pixels)
            assert torch.allclose(out, reference, rtol=1e-4, atol=1e-4)
            assert len(grads) == len(reference_grads)
            for mine, theirs in zip(grads, reference_grads, strict=True):
                assert torch.allclose(mine, theirs, rtol=1e-3, atol=1e-4)
        with still_frames(visual):  # opened again inside: changes nothing, and closing it keeps the outer
            assert torch.allclose(run(pool.frames(index))[0], reference, rtol=1e-4, atol=1e-4)
        assert "forward" in vars(visual.patch_embed)
    assert "forward" not in vars(visual.patch_embed) and "forward" not in vars(visual.embeddings)
    with pytest.raises(RuntimeError), still_frames(visual):  # given back after an error too
        visual(pool.frames(index)[:, :100], grid_thw=grid)
    assert "forward" not in vars(visual.downsample)
    assert torch.equal(run(pool.pixel_values(index))[0], reference)
    assert np.isfinite(float(reference.sum()))
