"""Hot reload of `rules/`: edits apply without a restart; a broken file keeps its previous version."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from streamwatch.config import CameraConfig
from streamwatch.rules.loader import RuleSet, load_rule_file
from streamwatch.tomlfile import DataFileError

log = logging.getLogger(__name__)

Signature = dict[Path, tuple[int, int]]


def signature(rules_dir: Path) -> Signature:
    """(mtime, size) of every rule file: cheap to poll, changes on every save."""
    result: Signature = {}
    for path in sorted(rules_dir.glob("*.toml")):
        try:
            stat = path.stat()
        except FileNotFoundError:  # deleted between glob and stat
            continue
        result[path] = (stat.st_mtime_ns, stat.st_size)
    return result


class RuleWatcher:
    def __init__(self, rules_dir: Path, cameras: Sequence[CameraConfig], current: RuleSet) -> None:
        self.rules_dir = rules_dir
        self.cameras = cameras
        self.current = current
        self._signature = signature(rules_dir)
        self.rejected: dict[Path, list[str]] = {}  # files whose latest version was rejected, with why

    def check(self) -> RuleSet | None:
        """A new rule set if any file changed (and something loaded differently), else None."""
        now = signature(self.rules_dir)
        if now == self._signature:
            return None
        changed = {p for p in now.keys() | self._signature.keys() if now.get(p) != self._signature.get(p)}
        self._signature = now
        result = RuleSet()
        owner: dict[str, Path] = {}
        for path in sorted(now):
            rules = self.current.files.get(path, [])
            if path in changed:
                try:
                    rules, warnings = load_rule_file(path, self.cameras)
                    result.warnings.extend(warnings)
                    self.rejected.pop(path, None)
                    log.info("rules: loaded %s (%d rules)", path.name, len(rules))
                except DataFileError as exc:
                    self.rejected[path] = exc.problems
                    for problem in exc.problems:
                        log.error("rules: %s", problem)
                    kept = "keeping its previous version" if path in self.current.files else "not loaded"
                    log.error("rules: %s rejected, %s", path.name, kept)
            clash = next((r.id for r in rules if r.id in owner), None)
            if clash is not None:
                problem = f"{path}: rules: rule id {clash!r} is also defined in {owner[clash]}"
                log.error("rules: %s; file not loaded", problem)
                self.rejected[path] = [problem]
                previous = self.current.files.get(path, [])
                rules = [] if any(r.id in owner for r in previous) else previous
            for rule in rules:
                owner[rule.id] = path
            if rules or path in self.current.files:
                result.files[path] = rules
                result.rules.extend(rules)
        for gone in self.current.files.keys() - now.keys():
            log.info("rules: %s removed", gone.name)
        self.current = result
        return result
