"""Cones on the sky: validation, distances, and snapping to a grid for caching.

Queries are snapped so that repeated requests for (nearly) the same field hit the
on-disk cache: the radius is rounded up to a ladder of 2^(1/4) steps from 1′, the
centre to a grid of 1/8 of that radius, and the query radius grows by the largest
possible centre shift, so the snapped cone always contains the requested one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.catalogs.errors import CatalogError

MAX_RADIUS_DEG = 5.0  # VizieR cone searches beyond this are slow and rarely wanted
MIN_SNAP_RADIUS_DEG = 1.0 / 60.0
RADIUS_STEPS_PER_OCTAVE = 4
CENTRE_STEPS_PER_RADIUS = 8
# The snapped centre is at most ~1.12 grid steps from the requested one (see snap_cone).
COVER_MARGIN_STEPS = 1.25


@dataclass(frozen=True)
class Cone:
    """A cone on the sky, degrees."""

    ra: float
    dec: float
    radius: float


def check_cone(ra: float, dec: float, radius_deg: float) -> Cone:
    """Validate a cone request; RA is wrapped into [0, 360).

    Raises
    ------
    CatalogError
        If a value is not finite, Dec is outside [−90, 90] or the radius is not in
        (0, MAX_RADIUS_DEG].
    """
    try:
        ra, dec, radius = float(ra), float(dec), float(radius_deg)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"the field centre and radius must be numbers: {exc}") from exc
    if not all(math.isfinite(v) for v in (ra, dec, radius)):
        raise CatalogError(
            f"the field centre ({ra}, {dec}) and radius {radius} must be finite numbers: "
            "check the image WCS"
        )
    if not -90.0 <= dec <= 90.0:
        raise CatalogError(f"declination {dec:g}° is outside [-90°, 90°]: check the image WCS")
    if not 0.0 < radius <= MAX_RADIUS_DEG:
        raise CatalogError(
            f"search radius {radius:g}° must be in (0, {MAX_RADIUS_DEG:g}]°: give the field "
            "radius in degrees (a few arcminutes to a degree or two for most images)"
        )
    return Cone(ra % 360.0, dec, radius)


def angular_distance(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in degrees (haversine; inputs in degrees, broadcast)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, float)) for v in (ra1, dec1, ra2, dec2))
    sin_ddec = np.sin((dec2 - dec1) / 2.0)
    sin_dra = np.sin((ra2 - ra1) / 2.0)
    h = sin_ddec**2 + np.cos(dec1) * np.cos(dec2) * sin_dra**2
    return np.degrees(2.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def in_cone(ra, dec, cone: Cone) -> np.ndarray:
    """Boolean mask of the positions within the cone."""
    return angular_distance(cone.ra, cone.dec, ra, dec) <= cone.radius


def snap_radius(radius_deg: float) -> float:
    """The radius rounded up to the ladder 1′·2^(k/4)."""
    ratio = max(radius_deg, MIN_SNAP_RADIUS_DEG) / MIN_SNAP_RADIUS_DEG
    # the small tolerance keeps exact ladder values from jumping one step up
    k = math.ceil(RADIUS_STEPS_PER_OCTAVE * math.log2(ratio) - 1e-9)
    return MIN_SNAP_RADIUS_DEG * 2.0 ** (k / RADIUS_STEPS_PER_OCTAVE)


def snap_cone(cone: Cone) -> Cone:
    """The grid cone that contains ``cone``; nearby requests give the same grid cone.

    The Dec grid has step s = r/8 (r the snapped radius). Each Dec row is cut into
    n = floor(360°·cos(δ_low)/s) equal RA cells, δ_low being the row's lowest |Dec|, so
    a cell is at most s wide on the sky (one cell round the pole). The centre moves at
    most s/2 in Dec and s in RA, so a query radius r + 1.25·s covers the request.
    """
    level = snap_radius(cone.radius)
    step = level / CENTRE_STEPS_PER_RADIUS
    dec = min(max(round(cone.dec / step) * step, -90.0), 90.0)
    low = max(abs(dec) - step / 2.0, 0.0)
    cells = math.floor(360.0 * math.cos(math.radians(low)) / step) if low < 90.0 else 0
    if cells <= 1:
        ra = 0.0
    else:
        width = 360.0 / cells
        ra = (round(cone.ra / width) % cells) * width
    return Cone(round(ra, 9), round(dec, 9), round(level + COVER_MARGIN_STEPS * step, 9))
