"""Both deploy images can install streamwatch: every dependency resolves to a binary wheel for the
image's Python and platform (pip's resolver against PyPI, `--only-binary=:all:`, no Docker engine
needed), with torch as the base image has it. The table below is what each base image holds; the
Dockerfiles are checked to still name those bases."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from support.helpers import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


@dataclass(frozen=True)
class Image:
    dockerfile: str
    base: str
    python: str  # the base image's Python
    glibc_minor: int  # its glibc (2.N): the newest manylinux tag it takes
    arch: str
    torch: str  # the torch the base image brings (kept; never resolved from PyPI)


IMAGES = [
    # pytorch/pytorch images: Ubuntu 22.04 (glibc 2.35) with conda's Python 3.11
    Image("x86/Dockerfile", "pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime", "3.11", 35, "x86_64", "2.7.1"),
    # jetson-containers' Ubuntu 24.04 variant for JetPack 6 (L4T r36.4): glibc 2.39, Python 3.12
    Image("jetson/Dockerfile", "dustynv/pytorch:2.6-r36.4.0-cu128-24.04", "3.12", 39, "aarch64", "2.6.0"),
]


@pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.dockerfile)
def test_the_dockerfile_builds_on_the_base_in_this_table(image: Image) -> None:
    text = (REPO / "deploy" / image.dockerfile).read_text()
    assert re.search(rf"^ARG BASE_IMAGE={re.escape(image.base)}$", text, re.MULTILINE)
    assert SpecifierSet(PROJECT["requires-python"]).contains(image.python)  # the package accepts its Python
    torch = next(Requirement(d) for d in PROJECT["dependencies"] if Requirement(d).name == "torch")
    assert torch.specifier.contains(Version(image.torch))  # and its torch


def platforms(image: Image) -> list[str]:
    """Every manylinux tag a glibc 2.N system takes (pip does not derive the older ones itself)."""
    tags = [f"manylinux_2_{minor}_{image.arch}" for minor in range(image.glibc_minor, 16, -1)]
    return [*tags, f"manylinux2014_{image.arch}"]


@pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.dockerfile)
def test_every_dependency_has_a_wheel_for_the_image(image: Image, tmp_path: Path) -> None:
    requirements = [d for d in PROJECT["dependencies"] if Requirement(d).name != "torch"]
    # peft and accelerate need torch: the base image's stands in as a wheel of that version with nothing
    # inside (pip sees torch as the image has it), so that a dependency asking for another torch fails
    base_torch = f"{image.torch}+base"
    links = base_torch_wheel(tmp_path / "base", base_torch)
    (tmp_path / "requirements.txt").write_text("\n".join([*requirements, f"torch=={base_torch}"]))
    report = tmp_path / "report.json"
    args = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--quiet",
        "--ignore-installed",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        image.python,
        *(option for tag in platforms(image) for option in ("--platform", tag)),
        "--find-links",
        str(links),
        "--report",
        str(report),
        "-r",
        str(tmp_path / "requirements.txt"),
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    chosen = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}
    for requirement in map(Requirement, requirements):
        name = canonicalize_name(requirement.name)
        assert name in chosen and requirement.specifier.contains(chosen[name]), (requirement, chosen.get(name))
    assert chosen[canonicalize_name("torch")] == base_torch  # nothing pulls a second torch over the base image's


def base_torch_wheel(folder: Path, version: str) -> Path:
    """A wheel named torch at `version` holding only its metadata: what pip finds installed in the image."""
    folder.mkdir()
    info = f"torch-{version}.dist-info"
    with zipfile.ZipFile(folder / f"torch-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")
    return folder
