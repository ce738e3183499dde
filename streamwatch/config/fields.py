"""Validators for single config values: ids, hosts, topics, camera sources."""

from __future__ import annotations

import ipaddress
import logging
import re
from urllib.parse import urlsplit

from streamwatch.redact import SECRETS, display_url

log = logging.getLogger(__name__)

CAMERA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "file")
NETWORK_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://")
LOCAL_PREFIXES = ("./", "../", "/", "~")  # a model id starting so is a path, never a hub id
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST = re.compile(r"^[A-Za-z0-9._:\[\]-]+$")


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def device_name(value: str) -> str:
    """Where a model runs (model.device, jobs.device)."""
    if not DEVICE.match(value):
        raise ValueError("expected auto, cpu, mps, cuda or cuda:N")
    return value


def host_name(value: str) -> str:
    """A host name or IP address (not a URL, not blank)."""
    if "://" in value:
        raise ValueError("expected a host name or IP address, not a URL (the port has its own key)")
    if not _HOST.match(value):
        raise ValueError("expected a host name or IP address like broker.local or 10.0.0.5")
    return value


def proxy_networks(values: list[str]) -> list[str]:
    """Addresses or networks of reverse proxies (10.0.0.5, 10.0.0.0/24, ::1): only their forwarded
    headers (X-Forwarded-For, X-Forwarded-Proto) are believed."""
    import ipaddress

    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network like 10.0.0.5 or 10.0.0.0/24") from None
    return values


def topic(value: str) -> str:
    if (
        not value
        or any(c in value for c in "#+\x00")
        or value.startswith("/")
        or value.endswith("/")
        or "//" in value
        or len(value.encode()) > 200
    ):
        raise ValueError(
            "expected a topic like 'streamwatch' or 'site/a': no '#', '+', empty levels or "
            "leading/trailing '/', at most 200 bytes"
        )
    return value


def identifier(value: str) -> str:
    """Camera and rule ids end up in MQTT topics and URLs: a safe, short subset of characters."""
    if not CAMERA_ID.match(value):
        raise ValueError("expected lowercase letters, digits, '-' or '_' (at most 64), starting with a letter or digit")
    return value


def source_url(value: str) -> str:
    """A camera source as written: a URL of a supported scheme with a host (and a valid port), or a path.
    Checked on the URL with its password masked, so a password holding '/', '?' or '#' that was not
    percent-encoded is not taken for the path."""
    SECRETS.add_url(value)
    if not value.strip():
        raise ValueError("must not be empty")
    if _CONTROL.search(value):
        raise ValueError("contains a control character (a line break or tab?)")
    shown = display_url(value)
    parts = urlsplit(shown)
    scheme = parts.scheme.lower()
    if "://" in value and scheme not in _URL_SCHEMES:
        raise ValueError(f"unsupported scheme {scheme!r}; expected one of {', '.join(_URL_SCHEMES)} or a file path")
    if scheme in ("rtsp", "rtsps", "http", "https"):
        if not parts.hostname:
            raise ValueError("the URL has no host")
        try:
            parts.port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ValueError("the URL's port is not a number from 1 to 65535") from None
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def legacy_threshold(owner: str, value: float | None) -> None:
    """`change_threshold` (a share of the picture) was replaced by `change_area` (source pixels): 0 still
    turns gating off; any other value is ignored, and said so."""
    if value:
        log.warning(
            "%s: change_threshold = %s is no longer used: the change gate now counts the largest changed "
            "patch in source pixels (change_area, default 16); set change_area instead",
            owner,
            value,
        )
