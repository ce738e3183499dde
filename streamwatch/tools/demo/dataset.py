"""(image, question, answer) examples for the demo rules, drawn from the synthetic scenes.

Questions are the rules' own templates (rules/*.toml) rendered with varied camera variables, so the
model learns the questions users run, not one wording per site. Each example first picks a rule and
the answer it wants (yes and no equally often; every count or choice equally often), then draws a
scene with that ground truth: the model has to look at the picture to answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamwatch.config import CameraConfig
from streamwatch.learning.finetune.example import TrainingExample
from streamwatch.rules.loader import load_rules
from streamwatch.rules.model import Rule
from streamwatch.tools.demo import defect, perimeter, warehouse

LOCATIONS = (
    "the north yard",
    "the main gate",
    "the east fence",
    "the back lot",
    "the loading dock",
    "aisle 3",
    "rack B",
    "the cold store",
    "line 2",
    "station 4",
    "the inspection bench",
    "the test cell",
    "the car park",
    "bay 7",
    "the south perimeter",
    "the assembly line",
)
ZONES = ("fence line", "secured yard", "restricted area", "storage yard", "inner compound", "monitored area")


@dataclass(frozen=True)
class Domain:
    """One kind of scene: how to draw it at random, with some facts forced, and what is true in it."""

    name: str  # the camera tag its rules select
    layout: Callable[..., Any]
    render: Callable[..., np.ndarray]
    truth: Callable[[Any], dict[str, Any]]
    forces: dict[str, str]  # rule id -> keyword of `layout` that forces its answer
    parts: Callable[[Any], dict[str, Any]]  # object kind -> the same layout without those objects


DOMAINS = {
    "perimeter": Domain(
        "perimeter",
        perimeter.random_perimeter,
        perimeter.render_perimeter,
        perimeter.perimeter_truth,
        {"fence-climb": "climbing", "restricted-zone-after-hours": "inside", "crowding": "count"},
        perimeter.perimeter_parts,
    ),
    "warehouse": Domain(
        "warehouse",
        warehouse.random_warehouse,
        warehouse.render_warehouse,
        warehouse.warehouse_truth,
        {
            "empty-shelf-slot": "empty_slot",
            "fallen-boxes": "fallen",
            "forklift-blocking-aisle": "forklift",
            "shelf-fill": "fill",
        },
        warehouse.warehouse_parts,
    ),
    "defect": Domain(
        "defect",
        defect.random_defect,
        defect.render_defect,
        defect.defect_truth,
        {"solder-bridge": "bridge", "missing-screw": "missing_screw", "housing-scratch": "scratch"},
        defect.defect_parts,
    ),
}
COUNTS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class Task:
    """A rule the demo model is taught: its domain and the answers its scenes can have."""

    rule: Rule
    domain: Domain
    answers: tuple[str, ...]  # what a scene can make the answer; one entry = never varies in these scenes

    @property
    def varies(self) -> bool:
        return len(self.answers) > 1


def demo_tasks(rules_dir: Path) -> list[Task]:
    """Every yes/no, count and choice rule in `rules_dir` whose cameras tag is one of the scene domains."""
    cameras = {name: CameraConfig(id=name, url=f"{name}.mp4", tags=[name]) for name in DOMAINS}
    tasks = []
    for rule in load_rules(rules_dir, list(cameras.values())).rules:
        domains = [DOMAINS[name] for name, camera in cameras.items() if rule.applies_to(camera)]
        if len(domains) != 1 or rule.answer == "text":
            continue
        domain = domains[0]
        if rule.id not in domain.forces:
            answers: tuple[str, ...] = ("no",) if rule.answer == "yes_no" else ()
        elif rule.answer == "yes_no":
            answers = ("yes", "no")
        elif rule.answer == "count":
            answers = tuple(str(n) for n in COUNTS)
        else:
            answers = tuple(rule.choices)
        if answers:
            tasks.append(Task(rule, domain, answers))
    return tasks


def render_question(rule: Rule, rng: np.random.Generator, camera: CameraConfig | None = None) -> str:
    camera = camera or CameraConfig(
        id="cam", url="cam.mp4", location=str(rng.choice(LOCATIONS)), zone=str(rng.choice(ZONES))
    )
    return rule.render(camera)


def forced_layout(task: Task, answer: str, rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    """A random layout of `task`'s domain that answers `answer` to it, and the domain's full truth
    (checked: a scene never carries a wrong label)."""
    keyword = task.domain.forces.get(task.rule.id)
    force: dict[str, Any] = {}
    if keyword and task.rule.answer == "yes_no":
        force[keyword] = answer == "yes"
    elif keyword and task.rule.answer == "count":
        force[keyword] = int(answer)
    elif keyword:
        force[keyword] = answer
    layout = task.domain.layout(rng, **force)
    truth = task.domain.truth(layout)
    actual = answer_text(truth[task.rule.id])
    if actual != answer:
        raise AssertionError(f"{task.rule.id}: the scene was asked for {answer!r} but shows {actual!r}")
    return layout, truth


def answer_text(value: Any) -> str:
    """A truth value as the model answers it: yes/no, a number or a choice."""
    return ("yes" if value else "no") if isinstance(value, bool) else str(value)


def example(task: Task, rng: np.random.Generator, answer: str | None = None) -> TrainingExample:
    """One example of `task`, with `answer` (default: one of its answers at random)."""
    answer = answer if answer is not None else str(rng.choice(task.answers))
    layout, _ = forced_layout(task, answer, rng)
    return TrainingExample(task.domain.render(layout, rng), render_question(task.rule, rng), answer, task.rule.id)


def examples(tasks: Sequence[Task], seed: int, *, constant_weight: float = 0.25) -> Iterator[TrainingExample]:
    """An endless, seeded stream; rules whose answer never varies are drawn less often."""
    rng = np.random.default_rng(seed)
    weights = np.array([1.0 if t.varies else constant_weight for t in tasks])
    weights /= weights.sum()
    while True:
        yield example(tasks[int(rng.choice(len(tasks), p=weights))], rng)
