"""Making a version live in the running service without a restart: its adapter into model.adapter's
folder (or the link pointed at it; the model watcher swaps it in), its thresholds into the rule files
(comments and order kept; the rules watcher reloads them). Each file is replaced atomically."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError

from streamwatch.config import CameraConfig, Settings
from streamwatch.errors import AdapterError, DataFileError, NotApplied
from streamwatch.inference.adapter import CONFIG, WEIGHTS, check_adapter_dir
from streamwatch.rules.loader import load_rule_file, load_rules

EMPTY = ".empty"  # an empty folder a linked slot points at when a version has no adapter


def check_slot(settings: Settings, *, service_loads: bool = False) -> Path:
    """model.adapter's folder, where something will load what is written there: the running service
    itself (`service_loads`: a release job or a rollback from its web UI or API), or its watch of the
    folder (`model.watch_s`); else NotApplied saying what to set."""
    target = settings.adapter_path()
    if target is None:
        raise NotApplied(
            'model.adapter is not set: set it in the config (e.g. model.adapter = "data/adapter", a folder) and '
            "restart once; after that, adapters apply without a restart"
        )
    if settings.model.watch_s <= 0 and not service_loads:
        raise NotApplied(
            "model.watch_s is 0: the service does not watch model.adapter; set watch_s (e.g. 5), or apply from "
            "the service's web UI or API (a release job), which hands the adapter to the model itself"
        )
    if target.exists() and not target.is_dir():
        raise NotApplied(f"model.adapter {target} is a file, not a folder")
    return target


def apply_adapter(settings: Settings, adapter: Path | None, *, service_loads: bool = False) -> None:
    """`adapter`'s files become model.adapter's (None: the slot is emptied: the model alone)."""
    target = check_slot(settings, service_loads=service_loads)
    if adapter is not None:
        check_adapter(adapter)
    if target.is_symlink():
        source = adapter if adapter is not None else _empty(target)
        link = target.with_name(f".{target.name}.new")
        link.unlink(missing_ok=True)
        link.symlink_to(source.resolve(), target_is_directory=True)
        os.replace(link, target)
        return
    target.mkdir(parents=True, exist_ok=True)
    if adapter is None:
        (target / CONFIG).unlink(missing_ok=True)  # the config first: the folder stops being an adapter
        for name in WEIGHTS:
            (target / name).unlink(missing_ok=True)
        return
    names = [name for name in WEIGHTS if (adapter / name).is_file()] + [CONFIG]  # the config last
    for name in names:
        temporary = target / f".{name}.new"
        shutil.copyfile(adapter / name, temporary)
        os.replace(temporary, target / name)
    for stale in set(WEIGHTS) - set(names):  # the other weights format, from an earlier adapter
        (target / stale).unlink(missing_ok=True)


def check_adapter(adapter: Path) -> None:
    try:
        check_adapter_dir(adapter)
    except AdapterError as exc:
        raise NotApplied(str(exc)) from None


def _empty(target: Path) -> Path:
    folder = target.parent / EMPTY
    folder.mkdir(exist_ok=True)
    return folder


def current_thresholds(rules_dir: Path, cameras: Sequence[CameraConfig]) -> dict[str, float]:
    """Every yes/no rule's threshold as the rule files say now."""
    return {rule.id: rule.threshold for rule in load_rules(rules_dir, cameras).rules if rule.answer == "yes_no"}


def set_thresholds(rules_dir: Path, cameras: Sequence[CameraConfig], thresholds: Mapping[str, float]) -> list[str]:
    """Write each rule's threshold into the file that defines it (a rule not there, or not a yes/no
    rule: NotApplied before anything is written); returns what changed, a line each."""
    loaded = load_rules(rules_dir, cameras)
    home = {rule.id: (path, rule) for path, rules in loaded.files.items() for rule in rules}
    for rule_id, value in thresholds.items():
        if rule_id not in home:
            raise NotApplied(f"threshold for {rule_id!r}: no such rule in {rules_dir}")
        if home[rule_id][1].answer != "yes_no":
            raise NotApplied(f"threshold for {rule_id!r}: a {home[rule_id][1].answer} rule has no threshold")
        if not 0.0 <= value <= 1.0:
            raise NotApplied(f"threshold for {rule_id!r}: {value} is not between 0 and 1")
    changed: list[str] = []
    by_file: dict[Path, dict[str, float]] = {}
    for rule_id, value in thresholds.items():
        path, rule = home[rule_id]
        if rule.threshold != value:
            by_file.setdefault(path, {})[rule_id] = value
            changed.append(f"{rule_id}: threshold {rule.threshold:g} -> {value:g} ({path.name})")
    for path, values in by_file.items():
        _write(path, values, cameras)
    return changed


def _write(path: Path, values: Mapping[str, float], cameras: Sequence[CameraConfig]) -> None:
    text = path.read_text(encoding="utf-8")
    try:
        document = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise NotApplied(f"{path}: cannot be edited: {exc}") from None
    for table in document.get("rules", []):
        if table.get("id") in values:
            table["threshold"] = values[table["id"]]
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_text(tomlkit.dumps(document), encoding="utf-8")
    try:
        load_rule_file(temporary, cameras)  # what the watcher will load: the same checks, before it is live
    except DataFileError as exc:
        temporary.unlink(missing_ok=True)
        raise NotApplied(f"{path}: the edited file would not load: {exc.problems[0]}") from None
    os.replace(temporary, path)
