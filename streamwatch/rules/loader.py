"""Load `rules/*.toml`: every problem reported as file:line: field: message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streamwatch.config import CameraConfig, Settings
from streamwatch.config.tomlfile import Loc, load_model, problem, where
from streamwatch.errors import DataFileError
from streamwatch.inference.limits import PromptLimits
from streamwatch.rules.model import Rule, RuleFile

MAX_RULE_FILES = 256  # *.toml files in the rules folder
MAX_RULES = 1000  # rules in one file
CHARS_ONLY = PromptLimits(max_chars=2000)


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    files: dict[Path, list[Rule]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def for_camera(self, camera: CameraConfig) -> list[Rule]:
        """The rules asked on this camera, shadow rules included."""
        return [r for r in self.rules if r.enabled and r.applies_to(camera)]

    def alerting_for_camera(self, camera: CameraConfig) -> list[Rule]:
        """The rules that alert on this camera (no shadow rules)."""
        return [r for r in self.for_camera(camera) if r.live]


class ActiveRules:
    """The rule set in force; hot reload replaces it as a whole."""

    def __init__(self, current: RuleSet) -> None:
        self.current = current

    def for_camera(self, camera: CameraConfig) -> list[Rule]:
        return self.current.for_camera(camera)

    def alerting_for_camera(self, camera: CameraConfig) -> list[Rule]:
        return self.current.alerting_for_camera(camera)

    def watched(self, cameras: Sequence[CameraConfig]) -> set[tuple[str, str]]:
        """Every (camera, rule) that can alert now: the enabled cameras x the enabled live rules that apply
        to them (shadow rules never alert)."""
        return {(c.id, r.id) for c in cameras if c.enabled for r in self.alerting_for_camera(c)}


@dataclass(frozen=True)
class RuleFileContents:
    """One file's rules, the notes about them, and where each rule's id is written."""

    path: Path
    rules: list[Rule]
    warnings: list[str]
    id_lines: dict[str, str]  # rule id -> "file:line"

    def clashes(self, owner: dict[str, Path]) -> list[str]:
        """Problems for the ids of this file that another file (in `owner`) already defines."""
        return [
            f"{self.id_lines[rule.id]}: rules: rule id {rule.id!r} is also defined in {owner[rule.id]}"
            for rule in self.rules
            if rule.id in owner and owner[rule.id] != self.path
        ]


def rule_files(rules_dir: Path) -> list[Path]:
    """The rule files of the folder, in name order; DataFileError when it is missing or holds too many."""
    if not rules_dir.is_dir():
        raise DataFileError([f"{rules_dir}: rules folder not found"])
    found = sorted(rules_dir.glob("*.toml"))
    if len(found) > MAX_RULE_FILES:
        raise DataFileError([f"{rules_dir}: {len(found)} rule files; at most {MAX_RULE_FILES} (*.toml)"])
    return found


def load_rule_file(path: Path, cameras: Sequence[CameraConfig], limits: PromptLimits = CHARS_ONLY) -> RuleFileContents:
    """Rules of one file and warnings; raises DataFileError listing every problem in the file."""
    parsed, lines = load_model(RuleFile, path, env=False)
    if len(parsed.rules) > MAX_RULES:
        raise DataFileError([problem(path, lines, ("rules",), f"{len(parsed.rules)} rules; at most {MAX_RULES}")])
    problems: list[str] = []
    warnings: list[str] = []
    id_lines: dict[str, str] = {}
    for index, rule in enumerate(parsed.rules):
        loc: Loc = ("rules", index)
        if rule.id in id_lines:
            problems.append(problem(path, lines, (*loc, "id"), f"rule id {rule.id!r} is used twice in this file"))
        id_lines.setdefault(rule.id, where(path, lines, (*loc, "id")))
        matched = [c for c in cameras if rule.applies_to(c)]
        problems.extend(_question_problems(path, lines, loc, rule, matched, limits))
        if not matched and rule.enabled:
            warnings.append(problem(path, lines, (*loc, "cameras"), f"rule {rule.id!r} matches no configured camera"))
    if problems:
        raise DataFileError(problems)
    return RuleFileContents(path, parsed.rules, warnings, id_lines)


def _question_problems(
    path: Path, lines: dict[Loc, int], loc: Loc, rule: Rule, cameras: Sequence[CameraConfig], limits: PromptLimits
) -> list[str]:
    """Unknown template variables, and questions (as rendered for each camera) past the limits."""
    for camera in cameras:
        missing = rule.missing_variables(camera)
        if missing:
            return [
                problem(
                    path,
                    lines,
                    (*loc, "question"),
                    f"unknown template variable {{{missing[0]}}} for camera {camera.id!r}; "
                    "use camera, camera_name, location, zone or a key of the camera's vars",
                )
            ]
    crowded = limits.images_problem(rule.frames)
    if crowded is not None:
        return [problem(path, lines, (*loc, "frames"), crowded)]
    found: list[str] = []
    choices = rule.choices if rule.answer == "choice" else []
    cut = next((why for choice in choices if (why := limits.answer_problem(choice, rule.max_new_tokens))), None)
    if cut is not None:
        found.append(problem(path, lines, (*loc, "max_new_tokens" if rule.max_new_tokens else "choices"), cut))
    for name, template in (("question", rule.question), ("describe", rule.describe)):
        if template is None:
            continue
        images = rule.frames if name == "question" else 1  # describe looks at the newest frame
        rendered = [
            (rule.prompt(c) if name == "question" else rule.render(c, template), f" (for camera {c.id!r})")
            for c in cameras
        ] or [(template, "")]
        too_long = next((why + on for text, on in rendered if (why := limits.problem(text, images))), None)
        if too_long is not None:
            found.append(problem(path, lines, (*loc, name), too_long))
    return found


def configured_rules(settings: Settings, limits: PromptLimits = CHARS_ONLY) -> RuleSet:
    """The rules of the config's `rules_dir` for its cameras; a missing folder is named with the line
    of `rules_dir` in the config."""
    folder = settings.path(settings.rules_dir)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DataFileError([settings.problem(("rules_dir",), f"the rules folder {folder} {what}")])
    return load_rules(folder, settings.cameras, limits)


def load_rules(rules_dir: Path, cameras: Sequence[CameraConfig], limits: PromptLimits = CHARS_ONLY) -> RuleSet:
    """Every `*.toml` in `rules_dir`, in name order. Raises DataFileError with all problems found."""
    result = RuleSet()
    problems: list[str] = []
    owner: dict[str, Path] = {}
    for path in rule_files(rules_dir):
        try:
            contents = load_rule_file(path, cameras, limits)
        except DataFileError as exc:
            problems.extend(exc.problems)
            continue
        problems.extend(contents.clashes(owner))
        for rule in contents.rules:
            owner.setdefault(rule.id, path)
        result.files[path] = contents.rules
        result.rules.extend(contents.rules)
        result.warnings.extend(contents.warnings)
    if problems:
        raise DataFileError(problems)
    result.warnings.extend(shadow_warnings(result))
    return result


def shadow_warnings(rules: RuleSet) -> list[str]:
    """Shadow rules whose live rule is not there (another file may bring it later: a warning, not an
    error): they are still asked and stored, with no live answer beside theirs."""
    live = {rule.id for rule in rules.rules if rule.live}
    return [
        f"rule {rule.id!r} shadows {rule.shadows!r}, which is not a live rule here: its answers are stored "
        "without a live answer beside them"
        for rule in rules.rules
        if rule.shadows is not None and rule.shadows not in live
    ]
