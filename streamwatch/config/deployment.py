"""What `streamwatch check` verifies beyond the file itself: that this machine can do what it says."""

from __future__ import annotations

import socket

from streamwatch.config.settings import Settings


def host_problems(settings: Settings) -> list[str]:
    """Addresses the web UI (when on) and `serve` would listen on that this machine cannot bind (not
    one of its addresses, a name that does not resolve). Bound on port 0: the real port may be in use
    by a running instance, which is no problem of the config."""
    found: list[str] = []
    for section, host, used in (("web", settings.web.host, settings.web.enabled), ("serve", settings.serve.host, True)):
        if not used:
            continue
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((host, 0))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            message = f"cannot listen on {host} on this machine ({reason}); use one of its addresses or 0.0.0.0"
            found.append(settings.problem((section, "host"), message))
    return found
