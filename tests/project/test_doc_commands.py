"""Every `streamwatch` command the README and docs/ show in a shell block names a command that exists,
with options that command takes (checked against the real argument parser; the set-up commands
themselves run in test_readme.py). A renamed or removed option fails here, not in a user's shell."""

from __future__ import annotations

import argparse
import re

import pytest
from support.helpers import REPO

from streamwatch.cli.main import build_parser

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "deploy" / "README.md"]


def shown_commands() -> list[tuple[str, str]]:
    """(page, command) for each `streamwatch ...` of a shell block; a synopsis line's alternatives
    (`a ... | b ...`, each without the leading `streamwatch`) are commands of their own."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL):
            for line in block.splitlines():
                line = re.sub(r"\s+#.*$", "", line.strip())
                if not line.startswith("streamwatch "):
                    continue
                for alternative in alternatives(line):
                    command = alternative.removeprefix("streamwatch ").strip()
                    found.append((page.name, command))
    return found


def alternatives(line: str) -> list[str]:
    """`a [--x | --y] | b` -> [`a [--x | --y]`, `b`]: split at the `|`s outside brackets."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(line):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "|" and depth == 0 and line[index - 1 : index + 2] == " | ":
            parts.append(line[start:index].strip())
            start = index + 1
    return [*parts, line[start:].strip()]


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def resolve(command: str) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser of the command's subcommand (as deep as the words go) and the options it names."""
    parser, words = build_parser(), command.split()
    while words and words[0] in subparsers(parser):
        parser = subparsers(parser)[words.pop(0)]
    options = [re.split(r"[=\]\[]", word.strip("[]"))[0] for word in words if word.lstrip("[").startswith("-")]
    return parser, [option for option in options if option]


def test_the_pages_show_commands() -> None:
    pages = {page for page, _ in shown_commands()}
    assert {"README.md", "security.md", "scale-out.md"} <= pages and len(shown_commands()) > 30


@pytest.mark.parametrize(("page", "command"), shown_commands())
def test_each_command_and_option_shown_exists(page: str, command: str) -> None:
    parser, options = resolve(command)
    assert parser.prog != "streamwatch", f"{page}: `streamwatch {command}` names no command"
    known = {string for action in parser._actions for string in action.option_strings}
    assert [option for option in options if option not in known] == [], f"{page}: `streamwatch {command}`"


def test_a_synopsis_splits_into_its_commands() -> None:
    assert alternatives("labels [--state a|b] [--json] | labels set ID yes|no|skip") == [
        "labels [--state a|b] [--json]",
        "labels set ID yes|no|skip",
    ]
    assert alternatives("eval [--a X | --b Y] [--c]") == ["eval [--a X | --b Y] [--c]"]


def test_a_renamed_option_would_fail() -> None:
    parser, options = resolve("events search TEXT [--camera C] [--sinse 7d]")
    known = {string for action in parser._actions for string in action.option_strings}
    assert parser.prog == "streamwatch events" and options == ["--camera", "--sinse"]
    assert "--sinse" not in known and "--camera" in known
