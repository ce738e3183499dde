"""The deployment files: the compose file, Dockerfiles, systemd units and Kubernetes manifests are
valid for the tools that read them, and the configs they ship load. (No Docker engine here: images
are linted, not built; see deploy/*/README.md.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.helpers import REPO

from streamwatch.config import load_settings
from streamwatch.config.passwords import hash_secret
from streamwatch.config.shard import Shard

DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent


def compose() -> list[str]:
    """`docker compose` (the plugin) where present, else Debian's `docker-compose`."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (scripts/install-test-deps.sh)")


@pytest.mark.parametrize("profile", [None, "vllm"])
def test_the_compose_file_is_valid(profile: str | None) -> None:
    env = os.environ | {"STREAMWATCH_WEB_PASSWORD_HASH": "pbkdf2_sha256$x"}
    args = [*compose(), *(["--profile", profile] if profile else []), "config", "--services"]
    result = subprocess.run(args, cwd=DEPLOY / "x86", capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = {"streamwatch", "mosquitto"} | ({"vllm"} if profile else set())
    assert expected <= set(result.stdout.split())  # (docker-compose v1 lists inactive profiles too)
    services = yaml.safe_load((DEPLOY / "x86" / "docker-compose.yml").read_text())["services"]
    assert services["vllm"]["profiles"] == ["vllm"] and "profiles" not in services["streamwatch"]
    missing = subprocess.run(
        [*compose(), "config", "-q"],
        cwd=DEPLOY / "x86",
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k != "STREAMWATCH_WEB_PASSWORD_HASH"},
    )
    assert missing.returncode != 0 and "hash-password" in missing.stderr  # says what to set


@pytest.mark.parametrize("dockerfile", ["x86/Dockerfile", "jetson/Dockerfile"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "info", str(DEPLOY / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / dockerfile).read_text()
    assert "HEALTHCHECK" in text and "USER 10001" in text  # non-root, health-checked


@pytest.mark.parametrize("unit", ["x86/streamwatch.service", "jetson/streamwatch.service"])
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    """systemd-analyze checks every directive; the programs the units start do not exist here, so
    they are pointed at /bin/true for the check (and dependencies on absent units dropped)."""
    text = (DEPLOY / unit).read_text()
    for program in ("/opt/streamwatch/.venv/bin/streamwatch", "/usr/bin/docker"):
        text = text.replace(program, "/bin/true")
    text = text.replace("Requires=docker.service\n", "").replace("EnvironmentFile=/etc", "EnvironmentFile=-/etc")
    copy = tmp_path / "streamwatch.service"
    copy.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "streamwatch.service" in line]
    assert result.returncode == 0 and problems == [], problems


def test_kubernetes_manifests_match_the_api_schema() -> None:
    files = [str(DEPLOY / "kubernetes" / name) for name in ("streamwatch.yaml", "secret.example.yaml")]
    result = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "-k", "1.30.0", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 6


@pytest.mark.parametrize("config", ["x86/config.toml", "x86/config-vllm.toml", "jetson/config.toml"])
def test_shipped_deploy_configs_load(config: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREAMWATCH_WEB_PASSWORD_HASH", hash_secret("a web password"))
    monkeypatch.setenv("VLLM_API_KEY", "k")
    path = tmp_path / "config.toml"
    text = (DEPLOY / config).read_text().replace("/opt/streamwatch/models/demo-glm4v", "hub/demo")
    text = text.replace("/opt/streamwatch/samples/", f"{REPO / 'samples'}/")  # the image's copy of samples/
    path.write_text(text)
    settings = load_settings(path)
    assert settings.web.host == "0.0.0.0" and settings.web.password_hash is not None


def test_the_statefulset_shard_formula_covers_every_camera() -> None:
    """Pod streamwatch-K runs shard K+1 of the replicas: as the manifest's shell computes it."""
    manifest = (DEPLOY / "kubernetes" / "streamwatch.yaml").read_text()
    assert 'value: "3"' in manifest and "replicas: 3" in manifest
    shards = []
    for pod in range(3):
        script = 'echo "$(( ${HOSTNAME##*-} + 1 ))/${SHARDS}"'
        out = subprocess.run(
            ["sh", "-c", script],
            env={"HOSTNAME": f"streamwatch-{pod}", "SHARDS": "3"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        shards.append(Shard.parse(out))
    assert [str(s) for s in shards] == ["1/3", "2/3", "3/3"]
