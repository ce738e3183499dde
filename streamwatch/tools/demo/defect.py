"""Inspection scenes: a circuit board screwed into a housing, with rows of solder pads around a chip, and
the defects the defect rules ask about (solder bridge, missing screw, scratch on the housing)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from streamwatch.tools.demo.draw import AA, HEIGHT, WIDTH, Colour, degrade, jitter

_BOARDS: tuple[Colour, ...] = ((30, 105, 55), (30, 65, 135), (35, 40, 40), (120, 40, 50))
_PADS: tuple[Colour, ...] = ((215, 175, 85), (195, 195, 200))
_HOUSINGS: tuple[Colour, ...] = ((170, 172, 175), (120, 122, 128), (70, 72, 78), (200, 195, 185))


@dataclass(frozen=True)
class Board:
    housing: Colour
    board: Colour
    pad: Colour
    rect: tuple[int, int, int, int]  # board x0, y0, x1, y1
    pads: int  # per row, two rows around the chip
    pad_size: tuple[int, int]
    gap: int
    screws: tuple[bool, ...]  # corner screws: present?
    bridge: tuple[int, int] | None = None  # (row, pad index) bridged to the next pad
    scratch: tuple[tuple[int, int], ...] = ()  # polyline on the housing
    label: tuple[int, int] = (0, 0)  # label's top-left corner, on the housing


def random_defect(
    rng: np.random.Generator,
    *,
    bridge: bool | None = None,
    missing_screw: bool | None = None,
    scratch: bool | None = None,
) -> Board:
    """A board in its housing; the keyword arguments force which defects it has."""
    w, h = int(WIDTH * rng.uniform(0.46, 0.62)), int(HEIGHT * rng.uniform(0.56, 0.72))
    x0, y0 = int(rng.integers(70, WIDTH - w - 70)), int(rng.integers(20, HEIGHT - h - 20))
    pad_w, pad_h, gap = int(rng.integers(16, 23)), int(rng.integers(26, 38)), int(rng.integers(12, 18))
    pads = min(int(rng.integers(4, 9)), (w - 80) // (pad_w + gap))
    screws = [True] * 4
    if missing_screw if missing_screw is not None else rng.random() < 0.5:
        for i in rng.choice(4, size=1 if rng.random() < 0.7 else 2, replace=False):
            screws[int(i)] = False
    has_bridge = bridge if bridge is not None else bool(rng.random() < 0.5)
    joined = (int(rng.integers(2)), int(rng.integers(pads - 1))) if has_bridge else None
    has_scratch = scratch if scratch is not None else bool(rng.random() < 0.5)
    left_side = x0 < WIDTH - (x0 + w)  # the narrower margin takes the label; the scratch goes on the wider
    label = (
        (int(rng.integers(8, x0 - 58)), int(rng.integers(20, HEIGHT - 60)))
        if left_side
        else (int(rng.integers(x0 + w + 8, WIDTH - 58)), int(rng.integers(20, HEIGHT - 60)))
    )
    band = (x0 + w + 6, WIDTH - 6) if left_side else (6, x0 - 6)
    lines = _scratch(rng, band) if has_scratch else ()
    return Board(
        housing=jitter(rng, _HOUSINGS[int(rng.integers(len(_HOUSINGS)))], 15),
        board=jitter(rng, _BOARDS[int(rng.integers(len(_BOARDS)))], 12),
        pad=jitter(rng, _PADS[int(rng.integers(len(_PADS)))], 12),
        rect=(x0, y0, x0 + w, y0 + h),
        pads=pads,
        pad_size=(pad_w, pad_h),
        gap=gap,
        screws=tuple(screws),
        bridge=joined,
        scratch=lines,
        label=label,
    )


def _scratch(rng: np.random.Generator, band: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """A bent line of 90-190 pixels on the housing between x = band[0] and band[1], drawn whole (tries
    again where it would run off the housing; the last try is cut at its edges)."""
    for _ in range(30):
        x, y = rng.uniform(*band), rng.uniform(30, HEIGHT - 30)
        length, angle = rng.uniform(90, 190), rng.uniform(0, np.pi)
        points = [(x, y)]
        for _ in range(2):
            angle += rng.uniform(-0.4, 0.4)
            x, y = x + np.cos(angle) * length / 2, y + np.sin(angle) * length / 2
            points.append((x, y))
        if all(band[0] <= px <= band[1] and 4 <= py <= HEIGHT - 4 for px, py in points):
            break
    return tuple((int(np.clip(px, *band)), int(np.clip(py, 4, HEIGHT - 4))) for px, py in points)


def render_defect(board: Board, rng: np.random.Generator, *, degraded: bool = True) -> np.ndarray:
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[:] = board.housing
    brushed = rng.normal(0, 4, size=(HEIGHT, 1, 1))  # brushed metal: faint horizontal streaks
    img = np.clip(img.astype(np.float32) + brushed, 0, 255).astype(np.uint8)
    x0, y0, x1, y1 = board.rect
    cv2.rectangle(img, (x0 + 4, y0 + 4), (x1 + 4, y1 + 4), tuple(int(c * 0.6) for c in board.housing), -1)
    cv2.rectangle(img, (x0, y0), (x1, y1), board.board, -1)
    _draw_label(img, board.label)
    if board.scratch:
        pts = np.array(board.scratch, np.int32)
        cv2.polylines(img, [pts], False, scratch_colour(board.housing), 9, AA)
    _draw_pads(img, board)
    inset = 23
    corners = ((x0 + inset, y0 + inset), (x1 - inset, y0 + inset), (x0 + inset, y1 - inset), (x1 - inset, y1 - inset))
    for present, (cx, cy) in zip(board.screws, corners, strict=True):
        if present:  # a bright screw head with a thin slot
            cv2.circle(img, (cx, cy), 17, (205, 205, 210), -1, AA)
            cv2.circle(img, (cx, cy), 17, (120, 120, 125), 2, AA)
            cv2.line(img, (cx - 11, cy), (cx + 11, cy), (90, 90, 95), 3, AA)
        else:  # the empty hole: black, in a thin copper ring
            cv2.circle(img, (cx, cy), 17, (190, 150, 70), -1, AA)
            cv2.circle(img, (cx, cy), 14, (10, 10, 10), -1, AA)
    return degrade(img, rng, strength=0.7) if degraded else img


def scratch_colour(housing: Colour) -> Colour:
    """Bare metal where the finish is scratched: brighter than a dark housing, darker than a light one."""
    shift = 90 if sum(housing) < 3 * 150 else -100
    r, g, b = (int(np.clip(c + shift, 0, 255)) for c in housing)
    return (r, g, b)


def _pad_rows(board: Board) -> tuple[list[int], list[int]]:
    x0, y0, x1, y1 = board.rect
    pad_w, pad_h = board.pad_size
    pitch = pad_w + board.gap
    start = (x0 + x1) // 2 - (board.pads * pitch - board.gap) // 2
    cy = (y0 + y1) // 2
    chip_h = int((y1 - y0) * 0.22)
    return [start + i * pitch for i in range(board.pads)], [cy - chip_h - 6 - pad_h, cy + chip_h + 6]


def _draw_pads(img: np.ndarray, board: Board) -> None:
    pad_w, pad_h = board.pad_size
    xs, ys = _pad_rows(board)
    cv2.rectangle(img, (xs[0], ys[0] + pad_h + 3), (xs[-1] + pad_w, ys[1] - 3), (25, 25, 28), -1)  # the chip
    for y in ys:
        for x in xs:
            cv2.rectangle(img, (x, y), (x + pad_w, y + pad_h), board.pad, -1)
    if board.bridge:
        row, index = board.bridge
        x, y = xs[index] + pad_w // 2, ys[row] + pad_h // 2
        solder = (235, 235, 240)
        cv2.ellipse(
            img,
            (x + (pad_w + board.gap) // 2, y),
            ((pad_w + board.gap) // 2 + 4, max(6, pad_h // 2)),
            0,
            0,
            360,
            solder,
            -1,
            AA,
        )


def _draw_label(img: np.ndarray, corner: tuple[int, int]) -> None:
    x, y = corner
    cv2.rectangle(img, (x, y), (x + 48, y + 30), (245, 245, 240), -1)
    for i in range(0, 40, 4):
        cv2.line(img, (x + 4 + i, y + 5), (x + 4 + i, y + 20), (20, 20, 20), 1 + (i // 4) % 2)


def defect_parts(board: Board) -> dict[str, Board]:
    """The same board without each defect (what object masks are found by)."""
    return {
        "solder bridge": replace(board, bridge=None),
        "missing screw": replace(board, screws=(True,) * len(board.screws)),
        "scratch": replace(board, scratch=()),
    }


def defect_truth(board: Board) -> dict[str, bool]:
    return {
        "solder-bridge": board.bridge is not None,
        "missing-screw": not all(board.screws),
        "housing-scratch": bool(board.scratch),
        "label-missing": False,  # a straight, readable label is always drawn; no misaligned or loose parts
        "part-misaligned": False,
        "foreign-object": False,
    }
