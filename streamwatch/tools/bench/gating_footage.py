"""`streamwatch bench gating-footage`: the change gate on labelled footage (footage/labels/*.toml), per
clip and region, sampled as a camera samples it: how many samples reused an answer (model passes
saved), how many of the still ones did, and how many labelled changes an answer was reused across
(missed). The gate's settings are a camera's defaults unless given. With `degrade`, each clip is also
replayed through those camera degradations (demo/camera.py: noise, night, h264, exposure, drift,
cloud, jitter, rain), over the same labels: light and noise change no label."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamwatch.config import CameraConfig
from streamwatch.errors import StreamwatchError
from streamwatch.reports import markdown_table, write_report
from streamwatch.tools.bench.footage import Footage, clip_samples, load_footage, replay_gate
from streamwatch.tools.bench.report import machine
from streamwatch.tools.demo.camera import degraded

DEFAULTS = CameraConfig(id="defaults", url="-")


class FootageError(StreamwatchError):
    """Why the bench cannot run (said on stderr, exit 2)."""


@dataclass(frozen=True)
class FootageBenchConfig:
    labels: Sequence[Path] = field(default_factory=lambda: sorted(Path("footage/labels").glob("*.toml")))
    area: float = DEFAULTS.change_area
    max_reuse_s: float = DEFAULTS.max_reuse_s
    degrade: Sequence[str] = ()
    out_dir: Path = Path("bench")
    name: str = "gating-footage"


def run_bench(config: FootageBenchConfig, progress: Callable[[str], None] = print) -> list[Path]:
    if not config.labels:
        raise FootageError("no labelled footage: give labels files (footage/labels/*.toml)")
    rows: list[dict[str, Any]] = []
    for path in config.labels:
        footage = load_footage(path)
        if not footage.clip.is_file():
            raise FootageError(f"{footage.clip} is missing: run scripts/fetch-footage.sh (or make install-test)")
        clean = [pixels for _at, pixels in clip_samples(footage.clip, footage.labels.sample_s)]
        for kind in ["clean", *config.degrade]:
            frames = clean if kind == "clean" else degraded(clean, kind)
            rows += _regions(footage, kind, frames, config, progress)
    data = {
        "benchmark": "gating-footage",
        "machine": machine(),
        "gate": {"change_area": config.area, "max_reuse_s": config.max_reuse_s},
        "labels": [str(path) for path in config.labels],
        "degradations": ["clean", *config.degrade],
        "regions": rows,
        "missed": sum(row["missed"] for row in rows),
    }
    return write_report(config.out_dir, config.name, data, markdown(data))


def _regions(
    footage: Footage, kind: str, frames: list[np.ndarray], config: FootageBenchConfig, progress: Callable[[str], None]
) -> list[dict[str, Any]]:
    rows = []
    for region in footage.labels.regions:
        run = replay_gate(
            frames, region, area=config.area, max_reuse_s=config.max_reuse_s, sample_s=footage.labels.sample_s
        )
        still_reused = sum(r for r, c in zip(run.reused, run.changed, strict=True) if not c)
        rows.append(
            {
                "clip": footage.name,
                "camera": kind,
                "region": region.id,
                "samples": len(frames),
                "changed": len(frames) - run.still,
                "saved": run.saved,
                "saved_pct": round(100 * run.saved / len(frames), 1),
                "still_reused_pct": round(100 * still_reused / run.still, 1) if run.still else None,
                "missed": len(run.missed),
                "missed_at": run.missed,
            }
        )
        progress(
            f"{footage.name} ({kind}) {region.id}: {run.saved} of {len(frames)} samples reused, "
            f"{len(run.missed)} labelled changes missed"
        )
    return rows


def markdown(data: dict[str, Any]) -> str:
    m, gate = data["machine"], data["gate"]
    columns = [
        ("clip", "clip"),
        ("camera", "camera"),
        ("region", "region"),
        ("samples", "samples"),
        ("changed", "labelled changed"),
        ("saved", "answers reused"),
        ("saved_pct", "passes saved %"),
        ("still_reused_pct", "still samples reused %"),
        ("missed", "changes missed"),
    ]
    shown = [
        row | {"still_reused_pct": "-" if row["still_reused_pct"] is None else row["still_reused_pct"]}
        for row in data["regions"]
    ]
    return f"""# The change gate on labelled footage

The gate as shipped (`change_area` {gate["change_area"]:g} source pixels, `max_reuse_s` {gate["max_reuse_s"]:g}) on each
region of each labelled clip ({", ".join(f"`{p}`" for p in data["labels"])}; footage/README.md says where
the clips come from and how their changes were labelled), sampled every `sample_s` of the clip's time.
A change is missed when an answer was reused at a sample labelled changed. The camera column says
through which degradation the clip was replayed (`clean`: as recorded; the others: demo/camera.py, on
the same labels). CPU {m.get("cpu")}; {m["date"]}.

Labelled changes missed: **{data["missed"]}**.

{markdown_table(shown, columns)}

Re-run: `streamwatch bench gating-footage` (numbers in `{data["benchmark"]}.json`).
"""


def _or_dash(value: float | None) -> str | float:
    return "-" if value is None else value
