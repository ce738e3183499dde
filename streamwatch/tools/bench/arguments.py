"""The benchmarks' argument value types: each parses one option's text or says, in one line, what it
expected (argparse shows it beside the option's name)."""

from __future__ import annotations

import argparse
from collections.abc import Collection

from streamwatch.tools.bench.chain import CHAIN


def _words(text: str, allowed: Collection[str], expected: str) -> list[str]:
    """Comma-separated words, each one of `allowed` (at least one); else `expected` says what was wanted."""
    words = [part.strip() for part in text.split(",") if part.strip()]
    if not words or any(word not in allowed for word in words):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return words


def _numbers(text: str, least: int, malformed: str, too_small: str) -> list[int]:
    """Comma-separated whole numbers, each at least `least` (at least one)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {malformed}, got {text!r}") from None
    if not values or any(value < least for value in values):
        raise argparse.ArgumentTypeError(f"expected {too_small}, got {text!r}")
    return values


def degradations(text: str) -> list[str]:
    from streamwatch.tools.demo.camera import KINDS

    return _words(text, KINDS, f"some of {','.join(KINDS)}")


def seeds(text: str) -> list[int]:
    return _numbers(text, 0, "seeds like 0,1,2", "seeds like 0,1,2")


def resolutions(text: str) -> list[tuple[int, int]]:
    try:
        pairs = [tuple(int(n) for n in part.lower().split("x")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1280x720,640x360, got {text!r}") from None
    if not pairs or any(len(p) != 2 or min(p) < 28 for p in pairs):
        raise argparse.ArgumentTypeError(f"expected sizes like 1280x720,640x360, got {text!r}")
    return [(p[0], p[1]) for p in pairs]


def sample_interval(text: str) -> float:
    """A camera's sample interval as the config accepts it (checked here, not by a service that fails to start)."""
    from annotated_types import Ge, Le

    from streamwatch.config.sections import CameraConfig

    bounds = CameraConfig.model_fields["sample_interval_s"].metadata
    low = next(float(b.ge) for b in bounds if isinstance(b, Ge))  # type: ignore[arg-type]
    high = next(float(b.le) for b in bounds if isinstance(b, Le))  # type: ignore[arg-type]
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"a camera's sample_interval_s is {low:g}-{high:g} s, got {value:g}")
    return value


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def int_list(text: str) -> list[int]:
    return _numbers(text, 1, "numbers separated by commas", "positive numbers")


def modes(text: str) -> list[str]:
    return _words(text, ("keyframes", "all", "auto"), "keyframes, all or auto separated by commas")


def steps(text: str) -> list[str]:
    return _words(text, CHAIN, f"steps among {','.join(CHAIN)}")
