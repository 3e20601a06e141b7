"""Where injected transients go: half on visible galaxies, half in empty sky."""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray
from scipy.spatial import cKDTree

MIN_SEPARATION_PX = 40.0  # between two isolated transients
EDGE_PX = 30.0  # transients stay this far from the image edges


def isolated_positions(
    n: int,
    nx: int,
    ny: int,
    avoid_xy: NDArray,
    avoid_r: NDArray,
    rng: np.random.Generator,
    edge: float = EDGE_PX,
) -> NDArray:
    """Up to ``n`` random (x, y) farther than ``avoid_r[k]`` from every ``avoid_xy[k]``.

    Candidates are drawn in batches and tested against their nearest neighbours;
    fewer than ``n`` rows come back when the field is too crowded (or too small).
    """
    if n <= 0 or nx - 1 - 2 * edge <= 0 or ny - 1 - 2 * edge <= 0:
        return np.zeros((0, 2))
    tree = cKDTree(avoid_xy) if len(avoid_xy) else None
    reach = float(avoid_r.max()) if len(avoid_r) else 0.0
    k = min(64, len(avoid_xy))
    found: list[NDArray] = []
    for _ in range(10):
        cand = np.c_[rng.uniform(edge, nx - 1 - edge, 2000), rng.uniform(edge, ny - 1 - edge, 2000)]
        ok = np.ones(len(cand), bool)
        if tree is not None:
            dist, idx = tree.query(cand, k=k, distance_upper_bound=reach)
            dist, idx = dist.reshape(len(cand), -1), idx.reshape(len(cand), -1)
            valid = idx < len(avoid_xy)
            radius = np.where(valid, avoid_r[np.minimum(idx, len(avoid_xy) - 1)], 0.0)
            ok = ~np.any(valid & (dist < radius), axis=1)
            ok &= ~valid[:, -1]  # all k neighbours within reach: too crowded to be sure
        for p in cand[ok]:
            if all(np.hypot(*(p - q)) >= MIN_SEPARATION_PX for q in found):
                found.append(p)
                if len(found) == n:
                    return np.array(found)
    return np.array(found).reshape(-1, 2)


def place_transients(
    n_transients: int,
    shape: tuple[int, int],
    limit: float,
    mag_above_limit: tuple[float, float],
    stars: dict[str, NDArray],
    galaxies: dict[str, NDArray],
    fwhm: float,
    rng: np.random.Generator,
) -> Table:
    """Positions and magnitudes of the transients.

    Parameters
    ----------
    n_transients : int
        How many; ``n // 2`` go on galaxies brighter than ``limit - 1`` (if there are
        enough), the rest in empty sky. None lies within 2 FWHM of a catalogue star.
    shape : (ny, nx)
    limit : float
        S/N = 5 limiting magnitude of the image.
    mag_above_limit : (lo, hi)
        Magnitudes are drawn uniformly in ``[limit - hi, limit - lo]``.
    stars, galaxies : dict
        ``x``, ``y``, ``mag`` arrays (galaxies also ``r_eff``, ``ellipticity``, ``theta``).
    fwhm : float
        Typical PSF FWHM in pixels, to keep isolated transients clear of stars.

    Returns
    -------
    Table
        x, y (0-based px), on_galaxy, host_index (-1 when isolated), mag, g_r (0).
    """
    ny, nx = shape
    gx, gy = galaxies["x"], galaxies["y"]
    # no transient may sit on a catalogue star, however faint (it would be a "known" object)
    star_tree = cKDTree(np.c_[stars["x"], stars["y"]]) if len(stars["x"]) else None
    clear = 2.0 * fwhm

    def off_stars(x: float, y: float) -> bool:
        return star_tree is None or not star_tree.query_ball_point((x, y), clear)

    inside = (gx > EDGE_PX) & (gx < nx - 1 - EDGE_PX) & (gy > EDGE_PX) & (gy < ny - 1 - EDGE_PX)
    hosts = rng.permutation(np.flatnonzero((galaxies["mag"] < limit - 1.0) & inside))
    rows = []
    for h in hosts:
        if len(rows) == n_transients // 2:
            break
        for _ in range(20):
            # an offset inside the host's disc, in its own frame, then turned onto the image
            radius = rng.uniform(0.3, 1.2) * galaxies["r_eff"][h]
            phi = rng.uniform(0, 2 * np.pi)
            ox = radius * np.cos(phi)
            oy = radius * np.sin(phi) * (1 - galaxies["ellipticity"][h])
            t = galaxies["theta"][h]
            x = gx[h] + ox * np.cos(t) - oy * np.sin(t)
            y = gy[h] + ox * np.sin(t) + oy * np.cos(t)
            if off_stars(x, y):
                rows.append((x, y, True, int(h)))
                break
    # keep clear of visible stars (more for bright ones, whose wings spread), of every
    # catalogue star by 2 FWHM, and of galaxies
    visible = stars["mag"] < limit + 0.5
    star_r = np.where(visible, 6 * fwhm + 6 * np.clip(limit - stars["mag"], 0, None), clear)
    avoid_xy = np.concatenate([np.c_[stars["x"], stars["y"]], np.c_[gx, gy]])
    avoid_r = np.concatenate([star_r, 8 * galaxies["r_eff"] + 4 * fwhm])
    for x, y in isolated_positions(n_transients - len(rows), nx, ny, avoid_xy, avoid_r, rng):
        rows.append((x, y, False, -1))
    table = Table(
        rows=rows or None,
        names=("x", "y", "on_galaxy", "host_index"),
        dtype=(float, float, bool, int),
    )
    lo, hi = mag_above_limit
    table["mag"] = limit - rng.uniform(lo, hi, len(table))
    table["g_r"] = np.zeros(len(table))  # young transients are blue: g-r ~ 0
    return table
