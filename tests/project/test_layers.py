"""Import contracts: the runtime never imports the tools; the pipeline and the learning loop never reach
up into the web layer, the composition root or the command line; the store does not know the outputs.

The contracts are written once, in pyproject.toml's [tool.importlinter], which `lint-imports` checks
in `make lint`. This test reads the same contracts and checks them on every import statement of the
source (function-level and relative ones included), so that a broken contract fails the test run too."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

from support.helpers import REPO

PACKAGE = REPO / "streamwatch"


def contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return found


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


def within(name: str, modules: list[str]) -> bool:
    """Whether module `name` is one of `modules` or inside one (streamwatch.clips is not streamwatch.cli)."""
    return any(name == module or name.startswith(f"{module}.") for module in modules)


def files_of(modules: list[str], root: Path = REPO) -> list[Path]:
    files: list[Path] = []
    for module in modules:
        folder = root / module.replace(".", "/")
        files += sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
    return files


def broken(contract: dict[str, Any], root: Path = REPO) -> list[str]:
    sources, forbidden = contract["source_modules"], contract["forbidden_modules"]
    files = files_of(sources, root)
    assert files and all(path.is_file() for path in files), contract["name"]  # the contract names what exists
    return [
        f"{path.relative_to(root)} imports {name}"
        for path in files
        for name in sorted(imports(path, root))
        if within(name, forbidden)
    ]


def test_every_contract_holds_on_every_import_statement() -> None:
    found = contracts()
    assert {c["type"] for c in found} == {"forbidden"} and len(found) == 3
    for contract in found:
        assert broken(contract) == [], contract["name"]


def test_the_runtime_is_every_package_but_the_tools_and_the_command_line() -> None:
    """A new package must be placed in a layer: the first contract names every package but the tools and
    the command line (which offers the tools' commands)."""
    (runtime, *_rest) = contracts()
    packages = {
        f"streamwatch.{path.stem if path.is_file() else path.name}"
        for path in PACKAGE.iterdir()
        if (path.is_dir() and (path / "__init__.py").exists()) or (path.suffix == ".py" and path.stem[0] != "_")
    }
    assert set(runtime["source_modules"]) == packages - {"streamwatch.tools", "streamwatch.cli"}


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    probe = tmp_path / "streamwatch" / "rules" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "def f() -> None:\n    from streamwatch.web.app import create_app\nfrom ..tools.demo import clips\n"
    )
    assert imports(probe, tmp_path) == {"streamwatch.web.app", "streamwatch.tools.demo"}
    contract = {
        "name": "probe",
        "source_modules": ["streamwatch.rules"],
        "forbidden_modules": ["streamwatch.tools", "streamwatch.web"],
    }
    assert broken(contract, tmp_path) == [
        "streamwatch/rules/probe.py imports streamwatch.tools.demo",
        "streamwatch/rules/probe.py imports streamwatch.web.app",
    ]
    assert not within("streamwatch.clips.ring", ["streamwatch.cli"])
