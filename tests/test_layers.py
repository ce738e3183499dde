"""Import contracts: the service's pipeline never reaches up into the web layer, the composition root
or the command line, nor out into the tools (the demo's generators and trainer, the benchmarks).
Checked on every import statement of the source, function-level and relative ones included."""

from __future__ import annotations

import ast
from pathlib import Path

from support.helpers import REPO

PACKAGE = REPO / "streamwatch"
TOOLS = ("streamwatch.demo", "streamwatch.bench")
ABOVE = ("streamwatch.web", "streamwatch.app", "streamwatch.live", "streamwatch.cli", "streamwatch.serve")
# The pipeline: ingest -> sampling (gate, frame history) -> inference -> rules -> alerts -> store and
# outputs, with labelling and shadow rules beside it, and the learning loop.
PIPELINE = (
    "alerts", "answer_log", "change", "clips", "config", "config_watch", "decision", "filewatch", "frame_history", "housekeeping",
    "inference", "ingest", "labelling", "lifecycle", "logs", "metrics", "outputs", "redact", "rules",
    "sampling", "shadowing", "shard", "store", "tomlfile", "vocabulary",
    # the learning loop: eval, fine-tuning, releases and the jobs that run them
    "evaluation", "finetune", "jobs", "release",
)  # fmt: skip


def imports(path: Path, root: Path = REPO) -> set[str]:
    """Every module a file under `root` imports, as an absolute name (relative imports resolved)."""
    package = path.relative_to(root).parent.parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            found.add(".".join([*base, *([node.module] if node.module else [])]))
    return found


def crosses(name: str) -> bool:
    """Whether module `name` is a tool or above the pipeline (streamwatch.clips is not streamwatch.cli)."""
    return any(name == layer or name.startswith(f"{layer}.") for layer in TOOLS + ABOVE)


def pipeline_files() -> list[Path]:
    files = []
    for name in PIPELINE:
        folder, module = PACKAGE / name, PACKAGE / f"{name}.py"
        files += sorted(folder.rglob("*.py")) if folder.is_dir() else [module]
    return files


def test_the_pipeline_imports_neither_tools_nor_the_layers_above_it() -> None:
    files = pipeline_files()
    assert len(files) > 60 and all(path.is_file() for path in files)  # the list names what exists
    crossing = [
        f"{path.relative_to(REPO)} imports {name}" for path in files for name in sorted(imports(path)) if crosses(name)
    ]
    assert crossing == []


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    probe = tmp_path / "streamwatch" / "rules" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f() -> None:\n    from streamwatch.web.app import create_app\nfrom ..demo import clips\n")
    assert imports(probe, tmp_path) == {"streamwatch.web.app", "streamwatch.demo"}
    assert crosses("streamwatch.web.app") and crosses("streamwatch.cli") and not crosses("streamwatch.clips.ring")


def test_the_store_does_not_know_the_outputs() -> None:
    """The outbox keeps messages for whatever output made them; no output is known to the store."""
    files = sorted((PACKAGE / "store").rglob("*.py"))
    assert files
    crossing = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in files
        for name in sorted(imports(path))
        if name == "streamwatch.outputs" or name.startswith("streamwatch.outputs.")
    ]
    assert crossing == []
