"""Warehouse scenes: a shelf rack with boxes in its slots (some missing), boxes fallen on the floor or
tilted on a shelf, and a forklift in the aisle, with a known ground truth for the warehouse rules."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from streamwatch.tools.demo.draw import AA, HEIGHT, WIDTH, Colour, degrade, draw_box, jitter, vertical_gradient

_CARDBOARD: tuple[Colour, ...] = ((181, 136, 84), (160, 118, 70), (200, 160, 105), (140, 100, 62), (120, 140, 170))
_BEAMS: tuple[Colour, ...] = ((230, 110, 30), (40, 80, 170), (120, 120, 125), (200, 60, 50))
_FORKLIFTS: tuple[Colour, ...] = ((235, 190, 30), (240, 130, 20), (200, 50, 40), (60, 140, 70))


@dataclass(frozen=True)
class Forklift:
    x: float  # centre
    depth: float  # 0 = far (at the rack), 1 = near the camera
    colour: Colour
    facing: int  # -1 left, 1 right


@dataclass(frozen=True)
class Aisle:
    rack: tuple[float, float, float]  # left, right, top (the rack stands on the floor line)
    floor_y: float
    levels: int
    slots: int
    wall: Colour
    floor: Colour
    beam: Colour
    boxes: tuple[Colour | None, ...]  # per slot, row by row from the top; None = empty slot
    tilted: int | None = None  # slot index of a box leaning in its slot
    fallen: tuple[tuple[float, float, float], ...] = ()  # boxes on the floor: x, depth, angle
    forklift: Forklift | None = None


def random_warehouse(
    rng: np.random.Generator,
    *,
    empty_slot: bool | None = None,
    fallen: bool | None = None,
    forklift: bool | None = None,
    fill: str | None = None,
) -> Aisle:
    """A rack and an aisle; the keyword arguments force what the scene shows."""
    levels, slots = int(rng.integers(2, 5)), int(rng.integers(3, 7))
    n = levels * slots
    if fill is None:
        fill = "full" if empty_slot is False else str(rng.choice(["full", "partial", "partial", "empty"]))
        if empty_slot and fill == "full":
            fill = "partial"
    if fill == "full":
        missing = 0
    elif fill == "empty":
        missing = n
    else:
        missing = 1 if rng.random() < 0.5 else int(rng.integers(1, n))
    gone = set(rng.choice(n, size=missing, replace=False).tolist())
    boxes = tuple(
        None if i in gone else jitter(rng, _CARDBOARD[int(rng.integers(len(_CARDBOARD)))], 15) for i in range(n)
    )
    has_forklift = bool(rng.random() < 0.4) if forklift is None else forklift
    truck = None
    if has_forklift:
        colour = jitter(rng, _FORKLIFTS[int(rng.integers(len(_FORKLIFTS)))], 15)
        truck = Forklift(float(WIDTH * rng.uniform(0.15, 0.85)), float(rng.random()), colour, int(rng.choice([-1, 1])))
    has_fallen = bool(rng.random() < 0.4) if fallen is None else fallen
    tilted: int | None = None
    on_floor: tuple[tuple[float, float, float], ...] = ()
    if has_fallen:
        present = [i for i, b in enumerate(boxes) if b is not None]
        if present and rng.random() < 0.3:
            tilted = int(rng.choice(present))
        else:
            on_floor = tuple(_floor_box(rng, truck) for _ in range(int(rng.integers(1, 3))))
    return Aisle(
        rack=(WIDTH * rng.uniform(0.02, 0.14), WIDTH * rng.uniform(0.8, 0.98), HEIGHT * rng.uniform(0.03, 0.1)),
        floor_y=HEIGHT * rng.uniform(0.58, 0.68),
        levels=levels,
        slots=slots,
        wall=jitter(rng, (200, 200, 195), 25),
        floor=jitter(rng, (150, 150, 145), 30),
        beam=jitter(rng, _BEAMS[int(rng.integers(len(_BEAMS)))], 15),
        boxes=boxes,
        tilted=tilted,
        fallen=on_floor,
        forklift=truck,
    )


def _floor_box(rng: np.random.Generator, truck: Forklift | None) -> tuple[float, float, float]:
    """A fallen box: x, depth, angle; never where the forklift would hide it."""
    while True:
        x = float(WIDTH * rng.uniform(0.08, 0.92))
        if truck is None or abs(x - truck.x) > WIDTH * 0.25:
            return x, float(rng.random()), float(rng.uniform(15, 75))


def render_warehouse(aisle: Aisle, rng: np.random.Generator, *, degraded: bool = True) -> np.ndarray:
    floor = int(aisle.floor_y)
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[:floor] = vertical_gradient(floor, WIDTH, aisle.wall, tuple(int(c * 0.85) for c in aisle.wall))  # type: ignore[arg-type]
    img[floor:] = vertical_gradient(HEIGHT - floor, WIDTH, tuple(int(c * 0.8) for c in aisle.floor), aisle.floor)  # type: ignore[arg-type]
    cv2.line(img, (0, int(HEIGHT * 0.93)), (WIDTH, int(HEIGHT * 0.93)), (220, 200, 40), 4, AA)  # aisle marking
    _draw_rack(img, aisle)
    near = [(d, "box", x, a) for x, d, a in aisle.fallen]
    if aisle.forklift:
        near.append((aisle.forklift.depth, "truck", 0.0, 0.0))
    for depth, kind, x, angle in sorted(near):
        scale = 0.7 + 0.8 * depth
        y = floor + 0.1 * HEIGHT + depth * (HEIGHT * 0.85 - floor - 0.1 * HEIGHT)
        if kind == "box":
            colour = _CARDBOARD[int(x) % len(_CARDBOARD)]
            draw_box(img, x, y - 25 * scale, 72 * scale, 46 * scale, angle, colour)
        elif aisle.forklift:
            _draw_forklift(img, aisle.forklift, y, scale)
    return degrade(img, rng) if degraded else img


def _draw_rack(img: np.ndarray, aisle: Aisle) -> None:
    left, right, top = aisle.rack
    bottom = aisle.floor_y
    cell_w, cell_h = (right - left) / aisle.slots, (bottom - top) / aisle.levels
    back = tuple(int(c * 0.55) for c in aisle.wall)
    cv2.rectangle(img, (int(left), int(top)), (int(right), int(bottom)), back, -1)
    for i, colour in enumerate(aisle.boxes):
        row, col = divmod(i, aisle.slots)
        x0, y1 = left + col * cell_w, top + (row + 1) * cell_h
        if colour is None:
            continue
        # boxes fill most of their slot, so that an empty slot is plain to see
        w, h = cell_w * (0.72 + 0.18 * ((i * 7) % 5) / 4), cell_h * (0.65 + 0.2 * ((i * 3) % 4) / 3)
        angle = 38.0 if aisle.tilted == i else 0.0
        draw_box(img, x0 + cell_w / 2, y1 - h / 2 - 4 - (h * 0.12 if angle else 0), w, h, angle, colour)
    for row in range(aisle.levels + 1):
        y = int(top + row * cell_h)
        cv2.rectangle(img, (int(left), y - 3), (int(right), y + 3), aisle.beam, -1)
    upright = tuple(int(c * 0.7) for c in aisle.beam)
    for col in range(aisle.slots + 1):
        x = int(left + col * cell_w)
        cv2.rectangle(img, (x - 3, int(top) - 3), (x + 3, int(bottom)), upright, -1)


def _draw_forklift(img: np.ndarray, truck: Forklift, ground: float, scale: float) -> None:
    w, h = 120 * scale, 80 * scale
    x0 = truck.x - w / 2
    dark = (40, 40, 45)
    body = (int(x0), int(ground - h * 0.55), int(x0 + w * 0.75), int(ground - h * 0.1))
    cv2.rectangle(img, body[:2], body[2:], truck.colour, -1)
    cab_x = x0 + w * 0.1
    cv2.rectangle(
        img,
        (int(cab_x), int(ground - h)),
        (int(cab_x + w * 0.45), int(ground - h * 0.55)),
        dark,
        max(2, int(4 * scale)),
    )
    mast_x = int(x0 + w * 0.8) if truck.facing > 0 else int(x0 - w * 0.08)
    cv2.rectangle(img, (mast_x, int(ground - h * 1.15)), (mast_x + int(w * 0.08), int(ground - h * 0.05)), dark, -1)
    fork_end = mast_x + int(w * 0.35) if truck.facing > 0 else mast_x - int(w * 0.3)
    cv2.rectangle(
        img, (min(mast_x, fork_end), int(ground - h * 0.12)), (max(mast_x, fork_end), int(ground - h * 0.05)), dark, -1
    )
    for wx in (x0 + w * 0.15, x0 + w * 0.6):
        cv2.circle(img, (int(wx), int(ground - h * 0.08)), max(3, int(h * 0.14)), (20, 20, 20), -1, AA)


def warehouse_parts(aisle: Aisle) -> dict[str, Aisle]:
    """The same aisle without each kind of object (what object masks are found by); an empty slot is
    found by filling it."""
    return {
        "empty slot": replace(aisle, boxes=tuple(b or _CARDBOARD[0] for b in aisle.boxes)),
        "shelved box": replace(aisle, boxes=(None,) * len(aisle.boxes), tilted=None),
        "fallen box": replace(aisle, fallen=(), tilted=None),
        "forklift": replace(aisle, forklift=None),
    }


def warehouse_truth(aisle: Aisle) -> dict[str, bool | str]:
    missing = sum(b is None for b in aisle.boxes)
    return {
        "empty-shelf-slot": missing > 0,
        "fallen-boxes": aisle.tilted is not None or bool(aisle.fallen),
        "forklift-blocking-aisle": aisle.forklift is not None,
        "shelf-fill": "full" if missing == 0 else ("empty" if missing == len(aisle.boxes) else "partial"),
        "fire-exit-blocked": False,  # no fire exit, people or pallets are ever drawn
        "missing-ppe": False,
        "pallet-overhang": False,
    }
