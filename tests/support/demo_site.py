"""The shipped demo in a test's folder (config, rules, the demo model and clips, a database of its own),
and solder-bridge boards on the line camera as label requests answered by their truth: what `eval` and
`model finetune` read."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from streamwatch.alerts.recorder import jpeg
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore
from streamwatch.store.labels import LabelStore, NewLabelRequest
from streamwatch.tools.demo.dataset import demo_tasks, example
from streamwatch.vocabulary import Label
from support.helpers import REPO


def demo_site(tmp_path: Path, *, own_rules: bool = False) -> tuple[Path, EventStore, LabelStore]:
    """The config's path and the site's stores. `own_rules`: the rule files copied (the test adds its
    own beside them) rather than linked."""
    for name in ("models", "samples") if own_rules else ("rules", "models", "samples"):
        (tmp_path / name).symlink_to(REPO / name)
    if own_rules:
        shutil.copytree(REPO / "rules", tmp_path / "rules")
    (tmp_path / "config.toml").write_text((REPO / "config.toml").read_text())
    database = Database.open(f"sqlite:///{tmp_path / 'data' / 'streamwatch.db'}")
    return (
        tmp_path / "config.toml",
        EventStore(database, tmp_path / "data" / "snapshots"),
        LabelStore(database, tmp_path / "data" / "snapshots", max_pending=999, max_labelled=999),
    )


def label_boards(labels: LabelStore, count: int, rng: np.random.Generator, reason: str = "uncertain") -> None:
    """`count` boards, every other one bridged, kept as label requests of solder-bridge on the line and
    labelled by their truth."""
    (task,) = [t for t in demo_tasks(REPO / "rules") if t.rule.id == "solder-bridge"]
    for index in range(count):
        truth = "yes" if index % 2 else "no"
        board = jpeg(Image.fromarray(example(task, rng, truth).image), 92)
        uid = f"lab{index}"
        at = datetime.now(UTC)
        labels.add(NewLabelRequest(uid, "line", "solder-bridge", "q", "m", "no", 0.6, 0.7, reason, at), board)
        labels.set_label(uid, Label(truth))
