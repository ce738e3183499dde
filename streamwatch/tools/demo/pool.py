"""A pool of generated scenes, ready for the model: pixel patches as the checkpoint's image processor makes
them, every rule's ground truth, and where each kind of object is (per image token).

Where an object is comes from the generator itself: the scene is drawn again without that kind of
object (the domain's `parts`), and the pixels that change are the object. The vision tower learns
from these maps (one label per image token, not one per picture), which is what lets a from-scratch
encoder learn to find a 6-pixel missing screw in minutes on a CPU.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from streamwatch.ingest.preprocess import fit_longest_side
from streamwatch.tools.demo.dataset import Task, demo_tasks, forced_layout

# Every kind of object the scene domains draw, in the order of the vision tower's object channels.
OBJECTS = (
    "person outside",
    "person inside",
    "person climbing",
    "empty slot",
    "shelved box",
    "fallen box",
    "forklift",
    "solder bridge",
    "missing screw",
    "scratch",
)
OBJECT_DOMAINS = {
    name: domain
    for domain, names in (("perimeter", OBJECTS[:3]), ("warehouse", OBJECTS[3:7]), ("defect", OBJECTS[7:]))
    for name in names
}
CHANGED = 24  # a pixel belongs to an object when removing the object changes it by more than this (0-255)


@dataclass(frozen=True)
class Scene:
    task: Task  # the rule whose answer the scene was drawn for
    answer: str
    image: np.ndarray  # RGB, degraded as a camera would
    truth: dict[str, Any]  # every rule of the domain
    objects: np.ndarray  # (height, width) per pixel: bit i set where OBJECTS[i] is


def draw_scene(task: Task, answer: str, rng: np.random.Generator) -> Scene:
    """A scene showing `answer` to `task`, with its object map."""
    domain = task.domain
    layout, truth = forced_layout(task, answer, rng)
    seed = int(rng.integers(2**31))
    clean = domain.render(layout, np.random.default_rng(seed), degraded=False).astype(np.int16)
    objects = np.zeros(clean.shape[:2], np.uint16)
    for name, without in domain.parts(layout).items():
        other = domain.render(without, np.random.default_rng(seed), degraded=False).astype(np.int16)
        changed = np.abs(clean - other).max(axis=2) > CHANGED
        objects[changed] |= np.uint16(1 << OBJECTS.index(name))
    image = domain.render(layout, np.random.default_rng(seed), degraded=True)
    return Scene(task, answer, image, truth, objects)


def token_objects(objects: np.ndarray, grid: tuple[int, int], *, min_share: float = 0.01) -> np.ndarray:
    """(grid_h * grid_w, len(OBJECTS)) 0/1: which objects cover at least `min_share` of each image token's
    area (tokens in the processor's row-major order)."""
    gh, gw = grid
    labels = np.zeros((gh * gw, len(OBJECTS)), np.float32)
    for i in range(len(OBJECTS)):
        mask = ((objects >> i) & 1).astype(np.float32)
        if mask.any():
            share = cv2.resize(mask, (gw, gh), interpolation=cv2.INTER_AREA)
            labels[:, i] = (share.reshape(-1) >= min_share).astype(np.float32)
    return labels


@dataclass
class ScenePool:
    """Scenes encoded once for training: patches (float16, one copy of GLM-4V's doubled frame), the image
    grid, token object labels and the scenes' rules, answers and truths."""

    patches: torch.Tensor  # (scenes, patches, 3, patch pixels) float16
    labels: torch.Tensor  # (scenes, image tokens, len(OBJECTS)) 0/1
    grid_thw: torch.Tensor  # (3,) the image grid every scene shares
    temporal: int  # frames per temporal patch (the processor repeats a still image)
    scenes: list[tuple[Task, str, dict[str, Any]]]  # task drawn for, its answer, the domain's whole truth

    @classmethod
    def encode(cls, processor: Any, scenes: Sequence[Scene], max_image_side: int = 640) -> ScenePool:
        """Encode `scenes` through the checkpoint's image processor, as the service feeds frames."""
        image_processor = processor.image_processor
        merge = int(image_processor.merge_size)
        temporal = int(getattr(image_processor, "temporal_patch_size", 1))
        images = [fit_longest_side(Image.fromarray(s.image), max_image_side) for s in scenes]
        chunks, grids = [], []
        for start in range(0, len(images), 64):
            out = image_processor(images=images[start : start + 64], return_tensors="pt")
            grids.append(out["image_grid_thw"])
            chunks.append(out["pixel_values"])
        grid = torch.cat(grids)
        if not bool((grid == grid[0]).all()):
            raise ValueError("the pool's scenes must all have one size")
        patches = torch.cat(chunks).view(len(scenes), int(grid[0].prod()), 3, temporal, -1)
        token_grid = (int(grid[0][1]) // merge, int(grid[0][2]) // merge)
        return cls(
            patches=patches[:, :, :, 0].to(torch.float16).contiguous(),  # the frame is repeated in time
            labels=torch.from_numpy(np.stack([token_objects(s.objects, token_grid) for s in scenes])),
            grid_thw=grid[0],
            temporal=temporal,
            scenes=[(s.task, s.answer, s.truth) for s in scenes],
        )

    @classmethod
    def concat(cls, pools: Sequence[ScenePool]) -> ScenePool:
        if any(not torch.equal(p.grid_thw, pools[0].grid_thw) for p in pools):
            raise ValueError("the pools' scenes must all have one size")
        return cls(
            patches=torch.cat([p.patches for p in pools]),
            labels=torch.cat([p.labels for p in pools]),
            grid_thw=pools[0].grid_thw,
            temporal=pools[0].temporal,
            scenes=[s for p in pools for s in p.scenes],
        )

    @property
    def tokens(self) -> int:
        return int(self.labels.shape[1])

    def __len__(self) -> int:
        return len(self.scenes)

    def pixel_values(self, index: torch.Tensor) -> torch.Tensor:
        """Patches of the scenes at `index`, as the image processor made them (frame repeated in time)."""
        rows = self.patches[index].float().unsqueeze(3).expand(-1, -1, -1, self.temporal, -1)
        return rows.reshape(-1, rows.shape[2] * self.temporal * rows.shape[-1])

    def frames(self, index: torch.Tensor) -> torch.Tensor:
        """Patches of the scenes at `index`, one frame each: (scenes x patches, 3 x patch pixels)."""
        rows = self.patches[index].float()
        return rows.reshape(-1, rows.shape[2] * rows.shape[3])

    def image_grid_thw(self, count: int) -> torch.Tensor:
        return self.grid_thw.unsqueeze(0).repeat(count, 1)


def draw_scenes(tasks: Sequence[Task], count: int, seed: int | Sequence[int]) -> list[Scene]:
    """`count` seeded scenes, each drawn for one of the rules whose answer varies, with an answer picked
    evenly among its answers."""
    rng = np.random.default_rng(seed)
    varying = [t for t in tasks if t.varies]
    if not varying:
        raise ValueError("no rule's answer varies in these scenes")
    scenes = []
    for _ in range(count):
        task = varying[int(rng.integers(len(varying)))]
        scenes.append(draw_scene(task, str(rng.choice(task.answers)), rng))
    return scenes


def build_pool(
    model_dir: str, rules_dir: Path, count: int, seed: int, *, workers: int = 2, chunk: int = 200
) -> ScenePool:
    """`count` scenes for the demo rules in `rules_dir`, encoded by `model_dir`'s processor, drawn in
    chunks by `workers` processes. Chunk i is seeded (seed, i): the pool is the same whatever the number
    of workers. Only encoded patches and token labels come back from the workers (full-resolution
    images and object maps of thousands of scenes would take gigabytes)."""
    jobs = [
        (model_dir, str(rules_dir), min(chunk, count - start), (seed, i))
        for i, start in enumerate(range(0, count, chunk))
    ]
    if workers <= 1:
        return ScenePool.concat([_encode_chunk(job) for job in jobs])
    with multiprocessing.get_context("spawn").Pool(workers) as processes:
        return ScenePool.concat(processes.map(_encode_chunk, jobs, chunksize=1))


def _encode_chunk(job: tuple[str, str, int, tuple[int, int]]) -> ScenePool:
    model_dir, rules_dir, count, seed = job
    torch.set_num_threads(1)
    processor = _processor(model_dir)
    return ScenePool.encode(processor, draw_scenes(demo_tasks(Path(rules_dir)), count, seed))


@functools.cache
def _processor(model_dir: str) -> Any:
    from streamwatch.vlm.processor import load_processor

    return load_processor(model_dir)
