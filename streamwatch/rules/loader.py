"""Load `rules/*.toml`: every problem reported as file:line: field: message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streamwatch.config import CameraConfig
from streamwatch.rules.model import Rule, RuleFile
from streamwatch.tomlfile import DataFileError, load_model, problem


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    files: dict[Path, list[Rule]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def for_camera(self, camera: CameraConfig) -> list[Rule]:
        return [r for r in self.rules if r.enabled and r.applies_to(camera)]


def load_rule_file(path: Path, cameras: Sequence[CameraConfig]) -> tuple[list[Rule], list[str]]:
    """Rules of one file and warnings; raises DataFileError listing every problem in the file."""
    parsed, lines = load_model(RuleFile, path, env=False)
    problems: list[str] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for index, rule in enumerate(parsed.rules):
        loc = ("rules", index)
        if rule.id in seen:
            problems.append(problem(path, lines, (*loc, "id"), f"rule id {rule.id!r} is used twice in this file"))
        seen.add(rule.id)
        matched = [c for c in cameras if rule.applies_to(c)]
        for camera in matched:
            missing = rule.missing_variables(camera)
            if missing:
                problems.append(problem(
                    path, lines, (*loc, "question"),
                    f"unknown template variable {{{missing[0]}}} for camera {camera.id!r}; "
                    "use camera, camera_name, location, zone or a key of the camera's vars",
                ))  # fmt: skip
                break
        if not matched and rule.enabled:
            warnings.append(problem(path, lines, (*loc, "cameras"), f"rule {rule.id!r} matches no configured camera"))
    if problems:
        raise DataFileError(problems)
    return parsed.rules, warnings


def load_rules(rules_dir: Path, cameras: Sequence[CameraConfig]) -> RuleSet:
    """Every `*.toml` in `rules_dir`, in name order. Raises DataFileError with all problems found."""
    if not rules_dir.is_dir():
        raise DataFileError([f"{rules_dir}: rules folder not found"])
    result = RuleSet()
    problems: list[str] = []
    owner: dict[str, Path] = {}
    for path in sorted(rules_dir.glob("*.toml")):
        try:
            rules, warnings = load_rule_file(path, cameras)
        except DataFileError as exc:
            problems.extend(exc.problems)
            continue
        for rule in rules:
            if rule.id in owner:
                problems.append(f"{path}: rules: rule id {rule.id!r} is also defined in {owner[rule.id]}")
            owner.setdefault(rule.id, path)
        result.files[path] = rules
        result.rules.extend(rules)
        result.warnings.extend(warnings)
    if problems:
        raise DataFileError(problems)
    return result
