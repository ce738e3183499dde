"""Object maps and the encoded scene pool: each object is found where it is drawn and nowhere else, and
the pool's patches and token labels line up with what the checkpoint's image processor makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support.helpers import REPO

from streamwatch.tools.demo.build import DEMO_SIZE
from streamwatch.tools.demo.dataset import Task, demo_tasks
from streamwatch.tools.demo.pool import OBJECTS, Scene, ScenePool, draw_scene, draw_scenes, token_objects
from streamwatch.tools.tiny import build_glm4v
from streamwatch.vlm.processor import load_processor

# rule, the object kind whose presence answers it "yes"
ANSWERED_BY = [
    ("fence-climb", "person climbing"),
    ("restricted-zone-after-hours", "person inside"),
    ("empty-shelf-slot", "empty slot"),
    ("fallen-boxes", "fallen box"),
    ("forklift-blocking-aisle", "forklift"),
    ("solder-bridge", "solder bridge"),
    ("missing-screw", "missing screw"),
    ("housing-scratch", "scratch"),
]


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    return {t.rule.id: t for t in demo_tasks(REPO / "rules")}


def _has(scene: Scene, kind: str) -> np.ndarray:
    return ((scene.objects >> OBJECTS.index(kind)) & 1).astype(bool)


@pytest.mark.parametrize(("rule", "kind"), ANSWERED_BY)
def test_an_object_is_mapped_exactly_when_the_scene_shows_it(tasks: dict[str, Task], rule: str, kind: str) -> None:
    for seed in range(12):
        yes = draw_scene(tasks[rule], "yes", np.random.default_rng(seed))
        no = draw_scene(tasks[rule], "no", np.random.default_rng(seed))
        assert yes.truth[rule] is True and no.truth[rule] is False
        area = _has(yes, kind).sum()
        assert 40 < area < 0.6 * yes.objects.size, (seed, area)  # there, not everywhere (an empty rack is large)
        assert not _has(no, kind).any(), seed


def test_objects_of_other_domains_are_never_mapped(tasks: dict[str, Task]) -> None:
    scene = draw_scene(tasks["missing-screw"], "yes", np.random.default_rng(0))
    for kind in ("person outside", "person inside", "person climbing", "forklift", "shelved box"):
        assert not _has(scene, kind).any()


def test_token_labels_mark_the_tokens_an_object_covers() -> None:
    objects = np.zeros((360, 640), np.uint16)
    forklift, scratch = 1 << OBJECTS.index("forklift"), 1 << OBJECTS.index("scratch")
    objects[130:170, 450:500] |= forklift  # token row 2, columns 7 (450-447) .. 7: 640/10 = 64 px per token
    objects[0:2, 0:2] |= scratch  # 4 pixels: under a hundredth of a token
    labels = token_objects(objects, (6, 10))
    assert labels.shape == (60, len(OBJECTS))
    marked = {int(i) for i in np.flatnonzero(labels[:, OBJECTS.index("forklift")])}
    assert marked == {2 * 10 + 7}
    assert labels[:, OBJECTS.index("scratch")].sum() == 0
    assert labels.sum() == 1


@pytest.fixture(scope="module")
def processor(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("demo-model")
    build_glm4v(out, DEMO_SIZE)
    return load_processor(str(out))


def test_the_pool_holds_the_processors_patches_and_aligned_labels(processor: Any) -> None:
    image = np.full((360, 640, 3), 20, np.uint8)
    image[120:180, 448:512] = 250  # exactly token row 2, column 7 of the 6 x 10 token grid
    objects = np.zeros((360, 640), np.uint16)
    objects[120:180, 448:512] = 1 << OBJECTS.index("forklift")
    tasks = demo_tasks(REPO / "rules")
    drawn = draw_scenes(tasks, 3, seed=0)
    marked = Scene(drawn[0].task, "yes", image, drawn[0].truth, objects)
    pool = ScenePool.encode(processor, [marked, *drawn])
    assert len(pool) == 4 and pool.tokens == 60
    assert pool.labels.shape == (4, 60, len(OBJECTS))
    expected = processor.image_processor(images=[d.image for d in drawn], return_tensors="pt")
    assert torch.equal(pool.image_grid_thw(3), expected["image_grid_thw"])
    assert torch.allclose(pool.pixel_values(torch.tensor([1, 2, 3])), expected["pixel_values"], atol=2e-3)
    # the bright block is in merged token 27 (patches 108-111) and labelled there, nowhere else
    brightness = pool.patches[0].float().mean(dim=(1, 2)).view(60, 4).mean(1)
    assert int(brightness.argmax()) == 27 and brightness[27] > brightness.median() + 1
    assert torch.nonzero(pool.labels[0]).tolist() == [[27, OBJECTS.index("forklift")]]


def test_pool_scenes_are_seeded_and_cover_the_varying_rules(tmp_path: Path) -> None:
    tasks = demo_tasks(REPO / "rules")
    a, b = draw_scenes(tasks, 40, seed=3), draw_scenes(tasks, 40, seed=3)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.objects, y.objects)
    assert {s.task.rule.id for s in a} <= {t.rule.id for t in tasks if t.varies}
    assert len({s.task.rule.id for s in a}) >= 7
    with pytest.raises(ValueError, match="varies"):
        draw_scenes([t for t in tasks if not t.varies], 1, seed=0)
