"""The camera degradations (demo/camera.py) do what they say: seeded, the same size, and each the
effect it names (noise new every frame, IR night grey and noisy, exposure steps and drifts by the
stated gains, a shadow that crosses, sub-pixel shake, rain streaks, H.264's artefacts)."""

from __future__ import annotations

import numpy as np
import pytest

from streamwatch.tools.demo.camera import DAY_NOISE, KINDS, NIGHT_NOISE, degraded


def _scene(frames: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    base = np.full((90, 160, 3), 120, dtype=np.uint8)
    base[30:60, 40:80] = rng.integers(60, 180, (30, 40, 3), dtype=np.uint8)  # some texture
    base[70:72, 100:102] = 250  # a bright dot
    return [base.copy() for _ in range(frames)]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_degradation_is_seeded_keeps_the_size_and_changes_the_picture(kind: str) -> None:
    frames = _scene()
    once, again, other = degraded(frames, kind, 1), degraded(frames, kind, 1), degraded(frames, kind, 2)
    assert len(once) == len(frames) and all(f.shape == frames[0].shape and f.dtype == np.uint8 for f in once)
    assert all(np.array_equal(a, b) for a, b in zip(once, again, strict=True))  # seeded
    assert any(not np.array_equal(a, f) for a, f in zip(once, frames, strict=True))  # it does something
    if kind in ("noise", "night", "h264", "jitter", "rain"):  # the random ones follow their seed
        assert any(not np.array_equal(a, b) for a, b in zip(once, other, strict=True))


def test_noise_is_new_every_frame_at_the_stated_levels() -> None:
    frames = _scene()
    day = degraded(frames, "noise")
    flat = [f[5:25, 5:150].astype(float) - 120 for f in day]  # a flat part of the picture
    assert abs(np.std(flat[0]) - DAY_NOISE) < 0.5 and not np.array_equal(flat[0], flat[1])
    dark = degraded(frames, "night")
    grey = dark[0][5:25, 5:150].astype(float)
    assert abs(grey.mean() - (120 * 0.6 + 10)) < 2 and abs(grey.std() - NIGHT_NOISE) < 1.5
    assert np.std(frames[0].astype(float)[30:60, 40:80].mean(axis=2)) > 0  # the texture stays, in grey


def test_light_changes_by_the_stated_gains() -> None:
    frames = _scene(30)
    steps = [float(f[5:25, 5:150].mean()) for f in degraded(frames, "exposure")]
    assert steps[0] == pytest.approx(120, abs=1) and steps[15] == pytest.approx(120 * 1.18, abs=1)
    assert steps[-1] == pytest.approx(120 * 0.85, abs=1)
    drifting = [float(f[5:25, 5:150].mean()) for f in degraded(_scene(40), "drift")]
    assert max(drifting) == pytest.approx(120 * 1.15, abs=1.5) and min(drifting) == pytest.approx(120 * 0.85, abs=1.5)
    shaded = degraded(_scene(9), "cloud")
    darkest = [int(np.argmin(f[15].astype(float).mean(axis=1))) for f in shaded]  # a flat row
    assert darkest[2] < darkest[4] < darkest[6]  # the shadow crosses from left to right


def test_shake_moves_the_picture_by_a_fraction_of_a_pixel_and_rain_draws_streaks() -> None:
    frames = _scene()
    for frame in degraded(frames, "jitter"):
        ys, xs = np.nonzero(frame[..., 0] > 185)
        near = (abs(ys - 70.5) < 4) & (abs(xs - 100.5) < 4)
        assert abs(ys[near].mean() - 70.5) < 2 and abs(xs[near].mean() - 100.5) < 2  # the dot moved a little
    wet = degraded(frames, "rain")[0]
    pale = np.count_nonzero((wet == (200, 200, 210)).all(axis=2))
    assert 90 * 160 // 3000 * 8 <= pale <= 90 * 160 // 3000 * 20  # streaks of about 18 pixels


def test_h264_gives_the_same_picture_with_its_artefacts() -> None:
    frames = _scene()
    coded = degraded(frames, "h264")
    error = np.mean([np.mean((a.astype(float) - f.astype(float)) ** 2) for a, f in zip(coded, frames, strict=True)])
    assert 1 < error < 400  # changed, but the same scene (PSNR above 22 dB)


def test_an_unknown_degradation_is_named() -> None:
    with pytest.raises(KeyError, match="no degradation 'fog': one of noise, night"):
        degraded(_scene(), "fog")
