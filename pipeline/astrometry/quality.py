"""Checks of an astrometric solution, WCS comparisons and the residual map plot.

A blind solution (solve-field, nova) is accepted only when many more
detections fall on catalogue stars than chance allows; the final solution
must also have enough matches and a small residual RMS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from numpy.typing import NDArray

from pipeline.astrometry.errors import PoorSolutionError
from pipeline.astrometry.match import match_nearest
from pipeline.astrometry.solution import AstrometrySolution, robust_sigma
from pipeline.astrometry.sources import (
    pixel_scale_deg,
    project_to_pixels,
    reference_stars,
    select_detections,
)
from pipeline.astrometry.wcsfile import pixel_to_sky, sky_to_pixel

MIN_SIGNIFICANCE = 5.0  # matched count above chance, in Poisson sigmas
CHECK_STARS = 1000  # brightest detections used by the check


@dataclass
class QualityReport:
    """Outcome of :func:`check_solution`.

    Attributes
    ----------
    accepted : bool
    n_matches : int
        Detections within the radius of a catalogue star.
    n_expected : float
        Matches expected by chance for a wrong WCS.
    rms_arcsec : float
        RMS distance of the matched pairs.
    radius_px : float
        Match radius used.
    reason : str
        Why the solution was rejected (empty when accepted).
    """

    accepted: bool
    n_matches: int
    n_expected: float
    rms_arcsec: float
    radius_px: float
    reason: str = ""


def check_solution(
    wcs: WCS,
    objects: Table,
    catalog: Table,
    shape: tuple[int, int],
    *,
    radius_px: float = 3.0,
    min_matches: int = 10,
    max_rms_arcsec: float | None = None,
    mag_column: str | None = None,
) -> QualityReport:
    """Count detections that fall on catalogue stars under ``wcs`` and judge the solution.

    Accepted when at least ``min_matches`` detections lie within ``radius_px``
    of a catalogue star, that count exceeds what chance gives by
    :data:`MIN_SIGNIFICANCE` sigma, and (if given) the RMS is below
    ``max_rms_arcsec``.
    """
    det = select_detections(objects, CHECK_STARS)
    refs, rx, ry = project_to_pixels(reference_stars(catalog, mag_column), wcs, shape, 0.0)
    # only catalogue stars about as many as the detections can be told apart from chance
    n_ref = min(len(refs), 3 * max(len(det), 1))
    ref_xy = np.c_[rx, ry][:n_ref]
    det_i, _, distance = match_nearest(det.xy, ref_xy, radius_px)
    area = float(shape[0] * shape[1])
    expected = len(det) * n_ref * np.pi * radius_px**2 / area
    scale_arcsec = pixel_scale_deg(wcs, shape) * 3600.0
    rms = float(np.sqrt(np.mean(distance**2)) * scale_arcsec) if len(distance) else float("nan")
    significance = (len(det_i) - expected) / np.sqrt(expected + 1.0)
    report = QualityReport(True, len(det_i), float(expected), rms, float(radius_px))
    if len(det) == 0 or n_ref == 0:
        report.accepted = False
        report.reason = (
            f"no match between {len(det)} detections and {n_ref} catalogue stars: "
            "is the field outside the catalogue?"
        )
    elif len(det_i) < min_matches or significance < MIN_SIGNIFICANCE:
        report.accepted = False
        report.reason = (
            f"only {len(det_i)} of {len(det)} detections fall within {radius_px:g} pixels of "
            f"the {n_ref} catalogue stars ({expected:.1f} expected by chance; at least "
            f"{min_matches} needed): the solution does not fit this catalogue"
        )
    elif max_rms_arcsec is not None and rms > max_rms_arcsec:
        report.accepted = False
        report.reason = f"residual RMS {rms:.2f}″ exceeds the limit {max_rms_arcsec:g}″"
    return report


def require_quality(
    solution: AstrometrySolution, *, min_matches: int, max_rms_px: float | None
) -> None:
    """Raise :class:`PoorSolutionError` when a final solution is not good enough."""
    if solution.n_matches < min_matches:
        raise PoorSolutionError(
            f"only {solution.n_matches} stars matched the catalogue ({min_matches} needed): "
            "the astrometric solution cannot be trusted; check the catalogue depth and the "
            "detection list"
        )
    if max_rms_px is not None and solution.rms_px > max_rms_px:
        raise PoorSolutionError(
            f"astrometric residual RMS {solution.rms_px:.2f} px ({solution.rms_arcsec:.2f}″) "
            f"exceeds {max_rms_px:g} px: the fit is poor (wrong matches, strong distortion "
            "or bad centroids); try a higher SIP order or check the image"
        )


def wcs_grid_difference(
    wcs: WCS, reference: WCS, shape: tuple[int, int], n: int = 41
) -> tuple[float, float]:
    """RMS and maximum pixel distance between two WCS over an n×n grid of the image.

    Sky positions of the grid under ``reference`` are mapped back to pixels
    through ``wcs``; the distance to the grid points measures how differently
    the two place a star.
    """
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
    ra, dec = pixel_to_sky(reference, gx.ravel(), gy.ravel())
    x, y = sky_to_pixel(wcs, ra, dec)
    distance = np.hypot(x - gx.ravel(), y - gy.ravel())
    return float(np.sqrt(np.mean(distance**2))), float(np.max(distance))


def binned_residuals(
    matches: Table, shape: tuple[int, int], bins: int = 8, min_count: int = 3
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """Median residual vector (catalogue minus detection, pixels) in bins×bins cells.

    Returns cell centres x, y, median dx, dy and the count per cell (NaN where
    fewer than ``min_count`` stars).
    """
    ny, nx = shape
    x, y = np.asarray(matches["x"]), np.asarray(matches["y"])
    dx, dy = np.asarray(matches["dx"]), np.asarray(matches["dy"])
    ix = np.clip((x / nx * bins).astype(int), 0, bins - 1)
    iy = np.clip((y / ny * bins).astype(int), 0, bins - 1)
    cx, cy = np.meshgrid((np.arange(bins) + 0.5) * nx / bins, (np.arange(bins) + 0.5) * ny / bins)
    mdx, mdy = np.full((bins, bins), np.nan), np.full((bins, bins), np.nan)
    count = np.zeros((bins, bins), int)
    for j in range(bins):
        for i in range(bins):
            inside = (ix == i) & (iy == j)
            count[j, i] = int(inside.sum())
            if count[j, i] >= min_count:
                mdx[j, i], mdy[j, i] = np.median(dx[inside]), np.median(dy[inside])
    return cx, cy, mdx, mdy, count


def plot_residual_map(
    solution: AstrometrySolution, shape: tuple[int, int], path: str | Path
) -> None:
    """PNG of the astrometric residuals: a quiver map over the field and their scatter.

    Left: each matched star's residual (catalogue minus detection) as a grey
    arrow and the per-cell medians in red, magnified so that the typical
    residual is about 1/40 of the field. Right: the residuals in arcsec.
    """
    matches = solution.matches
    ny, nx = shape
    figure = Figure(figsize=(11, 5.2))
    FigureCanvasAgg(figure)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    dx, dy = np.asarray(matches["dx"]), np.asarray(matches["dy"])
    typical = max(robust_sigma(np.hypot(dx, dy)) * 2, 0.05) if len(matches) else 1.0
    magnify = 0.025 * max(nx, ny) / typical
    left.quiver(
        matches["x"],
        matches["y"],
        dx * magnify,
        dy * magnify,
        angles="xy",
        scale_units="xy",
        scale=1,
        color="0.55",
        alpha=0.6,
        width=0.0015,
    )
    cx, cy, mdx, mdy, _ = binned_residuals(matches, shape)
    good = np.isfinite(mdx)
    left.quiver(
        cx[good],
        cy[good],
        mdx[good] * magnify * 4,
        mdy[good] * magnify * 4,
        angles="xy",
        scale_units="xy",
        scale=1,
        color="tab:red",
        width=0.005,
    )
    key = typical
    left.quiver(
        [0.05 * nx],
        [-0.08 * ny],
        [key * magnify],
        [0],
        angles="xy",
        scale_units="xy",
        scale=1,
        color="0.4",
        width=0.003,
        clip_on=False,
    )
    left.text(
        0.05 * nx,
        -0.13 * ny,
        f"{key:.2f} px (grey), {key / 4:.2f} px (red medians)",
        fontsize=8,
        clip_on=False,
    )
    left.set_xlim(0, nx)
    left.set_ylim(0, ny)
    left.set_aspect("equal")
    left.set_xlabel("x (pixels)")
    left.set_ylabel("y (pixels)")
    left.set_title(f"residuals over the field ({solution.method})")
    dra, ddec = np.asarray(matches["dra"]), np.asarray(matches["ddec"])
    right.scatter(dra, ddec, s=3, alpha=0.5, color="tab:blue")
    rms = solution.rms_arcsec
    if np.isfinite(rms):
        right.add_patch(Circle((0, 0), rms, fill=False, color="tab:red", label=f"RMS {rms:.3f}″"))
        limit = 4 * rms
        right.set_xlim(-limit, limit)
        right.set_ylim(-limit, limit)
        right.legend(loc="upper right", fontsize=8)
    right.axhline(0, color="0.8", lw=0.8)
    right.axvline(0, color="0.8", lw=0.8)
    right.set_aspect("equal")
    right.set_xlabel("ΔRA cos δ (arcsec)")
    right.set_ylabel("ΔDec (arcsec)")
    right.set_title(f"{solution.n_matches} matches, RMS {rms:.3f}″ ({solution.rms_px:.3f} px)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
