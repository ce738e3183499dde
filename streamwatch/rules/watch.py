"""Hot reload of `rules/`: edits apply without a restart; a broken file keeps its previous version.

The folder is polled (streamwatch.filewatch): an edit is loaded once the files have stood still for one
poll, never half written.

A file that is new or changed never displaces rules already live: when it reuses a rule id that an
unchanged file defines, the new or changed file is the one rejected (whatever the names' order).
A folder that disappears or a file that cannot be read is an error that keeps the rules as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from streamwatch.config import CameraConfig
from streamwatch.errors import DataFileError
from streamwatch.filewatch import FileWatch
from streamwatch.inference.limits import PromptLimits
from streamwatch.rules.loader import CHARS_ONLY, RuleSet, load_rule_file, rule_files, shadow_warnings
from streamwatch.rules.model import Rule

log = logging.getLogger(__name__)

Signature = dict[Path, tuple[int, int]]


def signature(rules_dir: Path) -> Signature:
    """(mtime, size) of every rule file: cheap to poll, changes on every save. A file that cannot be
    stat'ed (a symlink loop, no permission) gets (0, -errno): loading it reports why."""
    result: Signature = {}
    for path in rule_files(rules_dir):
        try:
            stat = path.stat()
        except FileNotFoundError:  # deleted between glob and stat
            continue
        except OSError as exc:
            result[path] = (0, -(exc.errno or 1))
            continue
        result[path] = (stat.st_mtime_ns, stat.st_size)
    return result


class RuleWatcher:
    def __init__(
        self, rules_dir: Path, cameras: Sequence[CameraConfig], current: RuleSet, limits: PromptLimits = CHARS_ONLY
    ) -> None:
        self.rules_dir = rules_dir
        self.cameras = cameras
        self.current = current
        self.limits = limits
        self.watch = FileWatch(lambda: signature(self.rules_dir))
        self.rejected: dict[Path, list[str]] = {}  # files whose latest version was rejected, with why
        self.folder_problem: str | None = None  # the folder itself cannot be read (logged once)

    def problem(self) -> str | None:
        """Why rules/ on disk is not what runs (readiness): the folder unreadable, or files rejected."""
        if self.folder_problem is not None:
            return f"{self.folder_problem}; the rules loaded before keep running"
        if not self.rejected:
            return None
        names = ", ".join(sorted(path.name for path in self.rejected))
        first = next(iter(self.rejected.values()))[0] if any(self.rejected.values()) else "rejected"
        return f"rules rejected, not applied: {names} (first problem: {first})"

    def check(self) -> RuleSet | None:
        """A new rule set once a change of the files has stood still for one check, else None."""
        try:
            edit = self.watch.poll()
        except DataFileError as exc:
            if self.folder_problem != exc.problems[0]:
                self.folder_problem = exc.problems[0]
                log.error("rules: %s; keeping the %d rules loaded", exc.problems[0], len(self.current.rules))
            return None
        if self.folder_problem is not None:
            log.info("rules: %s readable again", self.rules_dir)
            self.folder_problem = None
        if edit is None:
            return None
        before, now = edit.before, edit.now
        changed = {p for p in now.keys() | before.keys() if now.get(p) != before.get(p)}
        result = RuleSet()
        owner: dict[str, Path] = {}
        kept = {path: self.current.files[path] for path in now if path not in changed and path in self.current.files}
        for path, rules in kept.items():  # unchanged files keep their rules and their ids
            owner.update((rule.id, path) for rule in rules)
        loaded: dict[Path, list[Rule]] = dict(kept)
        for path in sorted(changed & now.keys()):
            rules = self._reload(path, owner, result)
            owner.update((rule.id, path) for rule in rules if rule.id not in owner)
            if rules or path in self.current.files:
                loaded[path] = rules
        for path in sorted(loaded):
            result.files[path] = loaded[path]
            result.rules.extend(loaded[path])
        for gone in self.current.files.keys() - now.keys():
            log.info("rules: %s removed", gone.name)
        for gone in self.rejected.keys() - now.keys():
            del self.rejected[gone]
        result.warnings.extend(shadow_warnings(result))
        for warning in result.warnings:
            log.info("rules: %s", warning)
        self.current = result
        return result

    def _reload(self, path: Path, owner: dict[str, Path], result: RuleSet) -> list[Rule]:
        """The rules a new or changed file contributes now: its new version, else its previous one
        (when that still fits beside the others), else none."""
        previous = self.current.files.get(path, [])
        try:
            contents = load_rule_file(path, self.cameras, self.limits)
            problems = contents.clashes(owner)
        except DataFileError as exc:
            problems = exc.problems
        except Exception as exc:  # whatever a file holds, the watcher goes on: this file is rejected
            log.exception("rules: %s could not be loaded", path.name)
            problems = [f"{path}: cannot load: {type(exc).__name__}: {exc}"]
        else:
            if not problems:
                result.warnings.extend(contents.warnings)
                self.rejected.pop(path, None)
                log.info("rules: loaded %s (%d rules)", path.name, len(contents.rules))
                return contents.rules
        self.rejected[path] = problems
        for line in problems:
            log.error("rules: %s", line)
        if previous and not any(rule.id in owner for rule in previous):
            log.error("rules: %s rejected, keeping its previous version", path.name)
            return previous
        log.error("rules: %s rejected, not loaded", path.name)
        return []
