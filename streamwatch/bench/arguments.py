"""The benchmarks' argument value types: each parses one option's text or says, in one line, what it
expected (argparse shows it beside the option's name)."""

from __future__ import annotations

import argparse

from streamwatch.bench.chain import CHAIN


def degradations(text: str) -> list[str]:
    from streamwatch.demo.camera import KINDS

    kinds = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"expected some of {','.join(KINDS)}, got {text!r}")
    return kinds


def seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2, got {text!r}") from None
    if not seeds or any(seed < 0 for seed in seeds):
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2, got {text!r}")
    return seeds


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
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def modes(text: str) -> list[str]:
    modes = [part.strip() for part in text.split(",") if part.strip()]
    if not modes or any(m not in ("keyframes", "all", "auto") for m in modes):
        raise argparse.ArgumentTypeError(f"expected keyframes, all or auto separated by commas, got {text!r}")
    return modes


def steps(text: str) -> list[str]:
    steps = [part.strip() for part in text.split(",") if part.strip()]
    if not steps or any(s not in CHAIN for s in steps):
        raise argparse.ArgumentTypeError(f"expected steps among {','.join(CHAIN)}, got {text!r}")
    return steps
