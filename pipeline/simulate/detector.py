"""What the detector adds to the sky: noise, cosmic rays, bad columns, saturation.

Noise model (the one header GAIN and RDNOISE describe): the expected image
``model`` (ADU) becomes ``Poisson(model * gain) / gain + Normal(0, read_noise / gain)``,
so the variance of a pixel is ``model / gain + (read_noise / gain)^2`` ADU^2 with
``gain`` in e-/ADU and ``read_noise`` in electrons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

_NEIGHBOURS = np.array([(0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)])


def add_noise(model: NDArray, gain: float, read_noise: float, rng: np.random.Generator) -> NDArray:
    """Photon noise on ``model`` (ADU, >= 0) plus Gaussian read noise; returns ADU."""
    electrons = rng.poisson(np.clip(model, 0, None) * gain).astype(np.float64)
    noisy = electrons / gain
    noisy += rng.normal(0.0, read_noise / gain, model.shape)
    return noisy


def pixel_variance(model: NDArray | float, gain: float, read_noise: float) -> NDArray | float:
    """Expected variance (ADU^2) of a pixel whose noiseless value is ``model`` ADU."""
    return np.asarray(model) / gain + (read_noise / gain) ** 2


@dataclass
class CosmicRays:
    """Charge added by cosmic rays: the deposit image, the pixels hit, the event list."""

    deposit: NDArray  # ADU added per pixel (float32)
    mask: NDArray  # bool, True where any charge was deposited
    events: Table  # kind ('hit'/'track'), x, y, length (px), angle (deg), n_pixels, total (ADU)


def make_cosmic_rays(
    shape: tuple[int, int], n_hits: int, n_tracks: int, rng: np.random.Generator
) -> CosmicRays:
    """Sharp hits of 1-4 adjacent pixels and straight tracks (grazing muons)."""
    ny, nx = shape
    deposit = np.zeros(shape, np.float64)
    rows: list[tuple] = []
    for _ in range(n_hits):
        x, y = int(rng.integers(1, nx - 1)), int(rng.integers(1, ny - 1))
        n_pix = int(rng.integers(1, 5))
        peak = float(np.clip(rng.lognormal(np.log(2500.0), 0.7), 400.0, 40000.0))
        pixels = [(x, y)]
        while len(pixels) < n_pix:
            bx, by = pixels[int(rng.integers(len(pixels)))]
            ddx, ddy = _NEIGHBOURS[int(rng.integers(8))]
            cand = (int(np.clip(bx + ddx, 0, nx - 1)), int(np.clip(by + ddy, 0, ny - 1)))
            if cand not in pixels:
                pixels.append(cand)
        values = [peak] + [peak * float(rng.uniform(0.2, 0.6)) for _ in pixels[1:]]
        for (px, py), val in zip(pixels, values, strict=True):
            deposit[py, px] += val
        rows.append(("hit", x, y, 0.0, 0.0, n_pix, float(sum(values))))
    for _ in range(n_tracks):
        x0, y0 = rng.uniform(0, nx), rng.uniform(0, ny)
        length = float(rng.uniform(8.0, 60.0))
        angle = float(rng.uniform(0.0, 180.0))
        per_px = float(rng.uniform(400.0, 1500.0))  # ADU per pixel of path length
        step = 0.2
        t = np.arange(0.0, length, step)
        xs = np.floor(x0 + t * np.cos(np.deg2rad(angle))).astype(int)
        ys = np.floor(y0 + t * np.sin(np.deg2rad(angle))).astype(int)
        keep = (xs >= 0) & (xs < nx) & (ys >= 0) & (ys < ny)
        np.add.at(deposit, (ys[keep], xs[keep]), per_px * step)
        n_pix = len(set(zip(xs[keep].tolist(), ys[keep].tolist(), strict=True)))
        rows.append(
            ("track", float(x0), float(y0), length, angle, n_pix, float(per_px * step * keep.sum()))
        )
    events = Table(
        rows=rows or None,
        names=("kind", "x", "y", "length", "angle", "n_pixels", "total"),
        dtype=("U5", float, float, float, float, int, float),
    )
    return CosmicRays(deposit.astype(np.float32), deposit > 0, events)


def make_bad_columns(
    shape: tuple[int, int], n_hot: int, n_dead: int, gain: float, rng: np.random.Generator
) -> list[dict]:
    """Hot columns (extra dark charge from some row up) and dead columns (no response).

    Returns dicts with ``x`` (0-based column), ``kind``, ``y_start``/``y_end`` (rows,
    end exclusive) and ``level`` (ADU added for hot, response factor for dead).
    """
    ny, nx = shape
    columns = rng.choice(np.arange(8, nx - 8), size=n_hot + n_dead, replace=False)
    out = []
    for k, x in enumerate(columns):
        if k < n_hot:
            y_start = int(rng.integers(0, ny // 2))
            level = float(rng.uniform(2000.0, 8000.0))
            out.append(
                {"x": int(x), "kind": "hot", "y_start": y_start, "y_end": ny, "level": level}
            )
        else:
            out.append({"x": int(x), "kind": "dead", "y_start": 0, "y_end": ny, "level": 0.02})
    return out


def apply_bad_columns(
    image: NDArray, columns: list[dict], gain: float, rng: np.random.Generator
) -> None:
    """Apply :func:`make_bad_columns` defects to ``image`` in place."""
    for col in columns:
        sl = (slice(col["y_start"], col["y_end"]), col["x"])
        if col["kind"] == "hot":
            n = col["y_end"] - col["y_start"]
            extra = rng.poisson(col["level"] * gain, n) / gain
            image[sl] += extra
        else:
            image[sl] *= col["level"]


def bad_column_mask(shape: tuple[int, int], columns: list[dict]) -> NDArray:
    """Boolean mask of the pixels spoiled by bad columns."""
    mask = np.zeros(shape, bool)
    for col in columns:
        mask[col["y_start"] : col["y_end"], col["x"]] = True
    return mask
