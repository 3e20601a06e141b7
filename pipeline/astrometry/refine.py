"""Refining an approximate WCS against a reference catalogue (the built-in method).

1. Project the catalogue through the approximate WCS and find the rotation,
   scale and shift that line it up with the brightest detections
   (:func:`pipeline.astrometry.match.find_alignment`).
2. Fit a plain TAN WCS to those pairs.
3. Iterate: project the catalogue through the current WCS, pair every usable
   detection with its nearest catalogue star inside a radius, fit TAN-SIP
   (:func:`pipeline.astrometry.fit.fit_tan_sip`) with outliers clipped, and
   set the radius to a few times the measured scatter (shrinking it from the
   tolerance as the fit improves). Stop when the pairs no longer change.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray

from pipeline.astrometry.errors import NoMatchError, PoorSolutionError
from pipeline.astrometry.fit import fit_tan_sip, highest_order, min_stars_for_order
from pipeline.astrometry.match import apply_affine, find_alignment, match_nearest
from pipeline.astrometry.solution import AstrometrySolution, residual_table, robust_sigma
from pipeline.astrometry.sources import (
    Detections,
    ReferenceStars,
    pixel_scale_deg,
    project_to_pixels,
    reference_stars,
    select_detections,
)

log = logging.getLogger("skysift.astrometry")

ALIGN_DETECTIONS = 300  # brightest detections used to find the offset
ALIGN_REFERENCE_FACTOR = 2.0  # ... against this many times as many catalogue stars
REFERENCE_PER_DETECTION = 3  # catalogue stars kept per detection for the fine matching
CLIP_SIGMA = 4.0  # residuals beyond this many sigma are outliers of the fit
RADIUS_SIGMA = 5.0  # the next match radius, in sigma of the current residuals
MIN_RADIUS_PX = 1.0
MAX_ITERATIONS = 10


@dataclass(frozen=True)
class RefineSettings:
    """Knobs of :func:`refine_wcs` (the photometry step fills them from its config)."""

    sip_order: int = 3
    max_offset_arcsec: float = 60.0
    max_rotation_deg: float = 1.0
    max_scale_error: float = 0.01
    tolerance_px: float = 4.0
    max_stars: int | None = 5000
    min_matches: int = 10
    mag_column: str | None = None


def no_reference_message(n_det: int, n_ref: int) -> str:
    return (
        f"no match between {n_det} detections and {n_ref} catalogue stars: "
        "is the field outside the catalogue? Check the catalogue query (position, radius, "
        "magnitude limits) or the image WCS"
    )


def refine_wcs(
    objects: Table,
    catalog: Table,
    wcs: WCS,
    shape: tuple[int, int],
    settings: RefineSettings | None = None,
) -> AstrometrySolution:
    """Refine ``wcs`` (approximate, e.g. from the header) against ``catalog``.

    Parameters
    ----------
    objects : astropy.table.Table
        Detections with 0-based ``x``, ``y``, ``flux`` (or ``mag``) and ``flags``.
    catalog : astropy.table.Table
        Reference stars, ``RAJ2000``/``DEJ2000`` degrees and a magnitude column.
    wcs : astropy.wcs.WCS
        The approximate celestial WCS.
    shape : (ny, nx)
        Image shape.
    settings : RefineSettings, optional

    Returns
    -------
    AstrometrySolution
        ``method="builtin"``.

    Raises
    ------
    NoMatchError
        Nothing lines up (no catalogue stars on the field, or no consistent offset).
    PoorSolutionError
        Too few matched stars to trust the fit.
    """
    settings = settings or RefineSettings()
    started = time.perf_counter()
    det = select_detections(objects, settings.max_stars)
    refs_all = reference_stars(catalog, settings.mag_column)
    scale_arcsec = pixel_scale_deg(wcs, shape) * 3600.0
    max_shift = settings.max_offset_arcsec / scale_arcsec + settings.tolerance_px
    refs, ref_x, ref_y = project_to_pixels(refs_all, wcs, shape, max_shift)
    if len(det) == 0:
        raise NoMatchError(
            f"no usable detections ({len(objects)} objects, none unflagged with a positive "
            "flux): astrometry needs stars; check the detection settings"
        )
    if len(refs) < 3:
        raise NoMatchError(no_reference_message(len(det), len(refs)))
    warnings_out = []
    if det.used_flagged:
        warnings_out.append(
            "fewer than 20 unflagged objects: flagged (but not saturated) objects were used "
            "for astrometry"
        )
    n_align = min(len(det), ALIGN_DETECTIONS)
    n_ref_align = int(ALIGN_REFERENCE_FACTOR * n_align) + 50
    alignment = find_alignment(
        det.xy[:n_align],
        np.c_[ref_x, ref_y][:n_ref_align],
        center=((shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0),
        max_shift=max_shift,
        max_rotation_deg=settings.max_rotation_deg,
        max_scale_error=settings.max_scale_error,
        tolerance=settings.tolerance_px,
    )
    log.info(
        "alignment: rotation %.3f°, scale %.4f, shift (%.1f, %.1f) px, %d pairs (%.1f σ)",
        alignment.rotation_deg,
        alignment.scale,
        *alignment.shift,
        len(alignment.det_index),
        alignment.significance,
    )
    n_keep_ref = max(REFERENCE_PER_DETECTION * len(det), 1000)
    refs, ref_x, ref_y = refs.subset(slice(0, n_keep_ref)), ref_x[:n_keep_ref], ref_y[:n_keep_ref]
    # first fine match: catalogue through the affine correction of the old WCS
    moved = apply_affine(alignment.transform, np.c_[ref_x, ref_y])
    det_i, ref_i, _ = match_nearest(det.xy, moved, settings.tolerance_px)
    current, det_i, ref_i, iterations = _iterate(
        det, refs, shape, det_i, ref_i, settings.tolerance_px, settings.sip_order
    )
    order = _fitted_order(current)
    matches = residual_table(
        current,
        det.x[det_i],
        det.y[det_i],
        refs.ra[ref_i],
        refs.dec[ref_i],
        object_index=det.index[det_i],
        catalog_index=refs.index[ref_i],
        mag=refs.mag[ref_i],
    )
    if len(matches) < settings.min_matches:
        raise PoorSolutionError(
            f"only {len(matches)} detections match catalogue stars (at least "
            f"{settings.min_matches} are needed): the catalogue may be too shallow or the "
            "image too sparse; lower min_matches only if you trust the field"
        )
    if order < settings.sip_order and settings.sip_order >= 2:
        warnings_out.append(
            f"{len(matches)} matched stars only support SIP order {order} "
            f"(order {settings.sip_order} needs {min_stars_for_order(settings.sip_order)})"
        )
    return AstrometrySolution(
        wcs=current,
        method="builtin",
        matches=matches,
        sip_order=order,
        n_detections=len(det),
        n_reference=len(refs),
        warnings=warnings_out,
        details={
            "alignment_shift_px": [round(v, 2) for v in alignment.shift],
            "alignment_rotation_deg": round(alignment.rotation_deg, 4),
            "alignment_scale": round(alignment.scale, 5),
            "alignment_significance": round(alignment.significance, 1),
            "iterations": iterations,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )


def matches_for_wcs(
    wcs: WCS,
    det: Detections,
    refs: ReferenceStars,
    shape: tuple[int, int],
    radius_px: float = 3.0,
) -> AstrometrySolution:
    """Evaluate a finished WCS (SCAMP, solve-field): its matched stars, outliers clipped.

    Detections are paired with the nearest catalogue star within ``radius_px``;
    pairs beyond :data:`CLIP_SIGMA` robust sigma are dropped. Nothing is refitted.
    """
    det_i, ref_i, distance = match_nearest(det.xy, _project(wcs, refs), radius_px)
    for _ in range(3):
        keep = distance < max(CLIP_SIGMA * robust_sigma(distance), 0.05)
        if keep.all():
            break
        det_i, ref_i, distance = det_i[keep], ref_i[keep], distance[keep]
    matches = residual_table(
        wcs,
        det.x[det_i],
        det.y[det_i],
        refs.ra[ref_i],
        refs.dec[ref_i],
        object_index=det.index[det_i],
        catalog_index=refs.index[ref_i],
        mag=refs.mag[ref_i],
    )
    return AstrometrySolution(
        wcs=wcs,
        method="evaluated",
        matches=matches,
        sip_order=_fitted_order(wcs),
        n_detections=len(det),
        n_reference=len(refs),
    )


def _fitted_order(wcs: WCS) -> int:
    return int(wcs.sip.a_order) if wcs.sip is not None else 1


def _project(wcs: WCS, refs: ReferenceStars) -> NDArray:
    with np.errstate(all="ignore"):
        x, y = wcs.all_world2pix(refs.ra, refs.dec, 0, quiet=True)
    return np.c_[x, y]


def _clipped_fit(det, refs, det_i, ref_i, order, shape):
    """Fit, drop pairs beyond CLIP_SIGMA, refit; returns the WCS, kept pairs and sigma."""
    keep = np.ones(len(det_i), bool)
    wcs = None
    sigma = float("nan")
    for _ in range(3):
        use_order = highest_order(int(keep.sum()), order)
        wcs = fit_tan_sip(
            det.x[det_i[keep]],
            det.y[det_i[keep]],
            refs.ra[ref_i[keep]],
            refs.dec[ref_i[keep]],
            sip_order=use_order,
            shape=shape,
        )
        predicted = _project(wcs, refs.subset(ref_i))
        distance = np.hypot(*(predicted - det.xy[det_i]).T)
        sigma = robust_sigma(distance[keep])
        new_keep = np.isfinite(distance) & (distance < max(CLIP_SIGMA * sigma, 0.05))
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return wcs, det_i[keep], ref_i[keep], sigma


def _iterate(det: Detections, refs: ReferenceStars, shape, det_i, ref_i, tolerance, order):
    """Match, clip-fit and set the radius from the scatter until the pairs settle.

    The radius follows the measured scatter but never exceeds ``tolerance``, so
    stars left out early (e.g. in distorted corners) join once the fit reaches them.
    """
    radius = tolerance
    iterations = 0
    wcs = None
    previous: tuple[bytes, bytes] | None = None
    for iterations in range(1, MAX_ITERATIONS + 1):
        min_pairs = min_stars_for_order(1)
        if len(det_i) < min_pairs:
            raise NoMatchError(
                f"only {len(det_i)} detections lie within {radius:.1f} pixels of catalogue "
                "stars after alignment: the match is not reliable; check the catalogue and "
                "the detection list"
            )
        step_order = 1 if iterations == 1 else order
        wcs, _, _, sigma = _clipped_fit(det, refs, det_i, ref_i, step_order, shape)
        radius = float(np.clip(RADIUS_SIGMA * sigma, MIN_RADIUS_PX, tolerance))
        det_i, ref_i, _ = match_nearest(det.xy, _project(wcs, refs), radius)
        state = (det_i.tobytes(), ref_i.tobytes())
        if state == previous and step_order == order:
            break
        previous = state
    # final fit on the settled pairs, with the same outlier clipping
    wcs, det_i, ref_i, _ = _clipped_fit(det, refs, det_i, ref_i, order, shape)
    return wcs, det_i, ref_i, iterations
