"""Put a template (and its mask) on the science image's pixel grid."""

from __future__ import annotations

import warnings

import numpy as np
from astropy.wcs import WCS, FITSFixedWarning
from reproject import reproject_adaptive, reproject_interp

from pipeline.templates.errors import TemplateError

METHODS = ("interp", "adaptive")
MIN_COVERAGE = 0.1


def template_wcs(header) -> WCS:
    """Celestial WCS of a template header, or TemplateError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header)
        except Exception as exc:
            raise TemplateError(f"the template WCS cannot be read: {exc}") from exc
    if not wcs.has_celestial:
        raise TemplateError(
            "the template has no celestial WCS: upload a template with astrometry in its header"
        )
    return wcs.celestial


def reproject_template(
    data: np.ndarray,
    header,
    mask: np.ndarray | None,
    image_wcs: WCS,
    shape: tuple[int, int],
    method: str = "interp",
) -> tuple[np.ndarray, np.ndarray]:
    """Template pixels and a boolean bad-pixel mask on the image grid.

    Masked template pixels become NaN before reprojection, so they spread to every
    output pixel they touch; pixels outside the template footprint are bad too.
    """
    if method not in METHODS:
        raise ValueError(f"reprojection method must be one of {METHODS}, not {method!r}")
    wcs = template_wcs(header)
    values = np.asarray(data, float).copy()
    if mask is not None:
        values[np.asarray(mask) != 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "interp":
            out, footprint = reproject_interp((values, wcs), image_wcs, shape_out=shape)
        else:
            out, footprint = reproject_adaptive(
                (values, wcs),
                image_wcs,
                shape_out=shape,
                conserve_flux=False,
                boundary_mode="strict",
            )
    bad = ~np.isfinite(out) | (footprint < 0.99)
    if (~bad).mean() < MIN_COVERAGE:
        raise TemplateError(
            f"the template covers only {100 * (~bad).mean():.1f} % of the image: it does not "
            "overlap the image (check the template position and the image WCS)"
        )
    # interpolation across a NaN yields NaN: grow the mask by one pixel for the edges it blurs
    return np.where(bad, 0.0, out), bad
