"""Perimeter scenes: a fence line across a yard, people behind it, in front of it or climbing it, by day
or by night (infrared grey), with a known ground truth for the perimeter rules."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from streamwatch.tools.demo.draw import (
    AA,
    CLOTHES,
    HEIGHT,
    WIDTH,
    Colour,
    Figure,
    degrade,
    draw_figure,
    jitter,
    vertical_gradient,
)

STATES = ("outside", "inside", "climbing")
_FENCES: tuple[Colour, ...] = ((150, 150, 150), (85, 110, 85), (70, 70, 75), (185, 185, 175))
_NIGHT_CLOTHES = ("red", "blue", "yellow", "white", "green", "orange")


@dataclass(frozen=True)
class Person:
    x: float
    state: str  # outside (beyond the fence) | inside (this side) | climbing (on the fence)
    depth: float  # 0 = far, 1 = near, within the person's side
    figure: Figure  # drawn with feet_y / height derived from the layout


@dataclass(frozen=True)
class Yard:
    horizon: float
    fence_base: float
    fence_height: float
    sky: tuple[Colour, Colour]
    ground: tuple[Colour, Colour]
    fence: Colour
    mesh: str  # chain | bars
    mesh_step: int
    post_step: int
    night: bool
    people: tuple[Person, ...] = field(default=())


def random_yard(rng: np.random.Generator) -> Yard:
    horizon = HEIGHT * rng.uniform(0.16, 0.3)
    fence_base = horizon + HEIGHT * rng.uniform(0.16, 0.28)
    sky_top = jitter(rng, (120, 160, 215), 30)
    ground = jitter(rng, (95, 130, 75), 30) if rng.random() < 0.6 else jitter(rng, (140, 130, 110), 25)
    return Yard(
        horizon=horizon,
        fence_base=fence_base,
        fence_height=HEIGHT * rng.uniform(0.2, 0.3),
        sky=(sky_top, jitter(rng, (200, 210, 220), 20)),
        ground=(tuple(int(c * 0.8) for c in ground), ground),  # type: ignore[arg-type]
        fence=jitter(rng, _FENCES[int(rng.integers(len(_FENCES)))], 15),
        mesh="chain" if rng.random() < 0.6 else "bars",
        mesh_step=int(rng.integers(8, 15)),
        post_step=int(rng.integers(60, 140)),
        night=bool(rng.random() < 0.3),
    )


def random_person(rng: np.random.Generator, state: str, night: bool) -> Person:
    names = _NIGHT_CLOTHES if night else tuple(CLOTHES)
    figure = Figure(
        x=0.0,
        feet_y=0.0,
        height=0.0,
        shirt=names[int(rng.integers(len(names)))],
        trousers=names[int(rng.integers(len(names)))],
        skin=int(rng.integers(4)),
        pose="climb" if state == "climbing" else ("walk" if rng.random() < 0.6 else "stand"),
        phase=float(rng.random()),
    )
    return Person(x=WIDTH * rng.uniform(0.05, 0.95), state=state, depth=float(rng.random()), figure=figure)


def random_perimeter(
    rng: np.random.Generator, *, climbing: bool | None = None, inside: bool | None = None, count: int | None = None
) -> Yard:
    """A yard with people; `climbing` / `inside` force whether anyone climbs / stands this side."""
    yard = random_yard(rng)
    if count is None:
        count = int(rng.choice([0, 1, 1, 2, 2, 3, 4]))
        count = max(count, int(bool(climbing)) + int(bool(inside)))
    states = [str(rng.choice(STATES)) for _ in range(count)]
    for want, name in ((climbing, "climbing"), (inside, "inside")):
        if want is False:
            states = [s if s != name else "outside" for s in states]
        elif want is True and name not in states:
            free = [i for i, s in enumerate(states) if s == "outside" or (s != name and states.count(s) > 1)]
            states[free[0] if free else 0] = name
    people: list[Person] = []
    for state in states:
        for _ in range(20):  # keep figures apart so each can be seen and counted
            person = random_person(rng, state, yard.night)
            if all(abs(person.x - p.x) > WIDTH * 0.12 for p in people):
                break
        people.append(person)
    return replace(yard, people=tuple(people))


def place(yard: Yard, person: Person) -> Figure:
    """Where a person stands in this yard: perspective from the horizon down to the camera."""
    base, fh = yard.fence_base, yard.fence_height
    if person.state == "outside":
        # a clear strip of ground on each side of the fence: which side someone is on can be seen
        feet = yard.horizon + HEIGHT * 0.05 + person.depth * (base - yard.horizon - HEIGHT * 0.11)
        height = max(26.0, fh * 0.85 * (feet - yard.horizon) / (base - yard.horizon))
    elif person.state == "inside":
        feet = base + HEIGHT * 0.1 + person.depth * (HEIGHT * 0.97 - base - HEIGHT * 0.1)
        height = fh * (0.9 + 1.4 * (feet - base) / (HEIGHT - base))
    else:
        feet = base - fh * (0.45 + 0.2 * person.depth)  # half way up: head and arms well above the top rail
        height = fh * 1.05
    return replace(person.figure, x=person.x, feet_y=feet, height=height)


def render_perimeter(yard: Yard, rng: np.random.Generator, *, degraded: bool = True) -> np.ndarray:
    horizon = int(yard.horizon)
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    sky = [tuple(int(c * 0.3) for c in colour) for colour in yard.sky] if yard.night else yard.sky  # a dark night sky
    img[:horizon] = vertical_gradient(horizon, WIDTH, *sky)
    img[horizon:] = vertical_gradient(HEIGHT - horizon, WIDTH, *yard.ground)
    order = sorted(yard.people, key=lambda p: (STATES.index(p.state) if p.state != "inside" else 3, p.depth))
    for person in order:
        if person.state == "outside":
            draw_figure(img, place(yard, person))
    _draw_fence(img, yard)
    for person in order:
        if person.state != "outside":
            draw_figure(img, place(yard, person))
    if yard.night:
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        lit = grey * rng.uniform(0.45, 0.8) + rng.uniform(0, 15)
        img = np.repeat(np.clip(lit, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return degrade(img, rng) if degraded else img


def _draw_fence(img: np.ndarray, yard: Yard) -> None:
    base, top = int(yard.fence_base), int(yard.fence_base - yard.fence_height)
    colour, thin = yard.fence, max(1, yard.mesh_step // 8)
    step = yard.mesh_step
    if yard.mesh == "chain":
        span = base - top
        for x in range(-span, WIDTH + span, step):
            cv2.line(img, (x, top), (x + span, base), colour, thin, AA)
            cv2.line(img, (x + span, top), (x, base), colour, thin, AA)
    else:
        for x in range(0, WIDTH, step):
            cv2.line(img, (x, top), (x, base), colour, thin + 1, AA)
    post = tuple(int(c * 0.75) for c in colour)
    for x in range(yard.post_step // 2, WIDTH, yard.post_step):
        cv2.rectangle(img, (x - 3, top - 4), (x + 3, base), post, -1)
    cv2.line(img, (0, top), (WIDTH, top), post, 4, AA)
    cv2.line(img, (0, base), (WIDTH, base), post, 2, AA)


def perimeter_parts(yard: Yard) -> dict[str, Yard]:
    """The same yard without each kind of person (what object masks are found by)."""
    return {
        f"person {state}": replace(yard, people=tuple(p for p in yard.people if p.state != state)) for state in STATES
    }


def perimeter_truth(yard: Yard) -> dict[str, bool | int]:
    states = [p.state for p in yard.people]
    return {
        "fence-climb": "climbing" in states,
        "restricted-zone-after-hours": "inside" in states,
        "crowding": len(states),
        "gate-loitering": False,  # no gate and no vehicle or tools are ever drawn
        "tools-near-fence": False,
        "vehicle-at-gate": False,
    }
