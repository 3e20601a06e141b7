"""Forced aperture photometry at target positions: calibrated magnitudes or upper limits.

Targets are measured exactly like the detected objects (:func:`pipeline.measurement.
measure_positions`: same aperture, annulus, noise model and flags) with no S/N cut.
Each row then gets

* ``sn`` = flux / fluxerr and ``detected`` = ``sn >= sn_threshold`` (the photometry
  step's ``sn``);
* ``mag_calib`` ± ``mag_calib_err`` through the image's calibration
  (:meth:`pipeline.calibration.CalibrationResult.magnitude`: ZP(x, y), colour term for
  the calibration's colour of unknown objects, model error and intrinsic scatter) —
  NaN when the flux is not positive;
* ``mag_limit`` = −2.5 log10(sn_threshold · bg_fluxerr) + ZP(x, y) + C·colour, the local
  background-only limit (:func:`pipeline.limits.local_limits`), to quote when
  ``detected`` is False.

The aperture magnitudes are on the calibration's scale: calibration stars were measured
in the same aperture, so the zero point already holds the aperture correction.

Centroiding (optional): the Gaussian-windowed centroid (SExtractor's XWIN, iterated by
sep until it converges) within one FWHM of the given position. A target whose S/N at the
centroid is below the threshold is measured at the given position instead, so that an
upper limit always refers to the position asked for. ``x_orig``/``y_orig`` and
``ra_orig``/``dec_orig`` keep the given position.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

from pipeline.calibration.model import (
    MAG_CALIB_COLOR_COLUMN,
    MAG_CALIB_COLUMN,
    MAG_CALIB_ERR_COLUMN,
)
from pipeline.calibration.result import CalibrationResult
from pipeline.detection import windowed_positions
from pipeline.limits import MAG_LIMIT_COLUMN, local_limits
from pipeline.measurement import measure_positions, sky_coordinates

MEASURED_COLUMNS = (
    "flux",
    "fluxerr",
    "bg_fluxerr",
    "bg_local",
    "mag",
    "magerr",
    "flags",
    "ra",
    "dec",
)
# The photometry columns of the targets table, in order (after the identification columns).
PHOTOMETRY_COLUMNS = (
    "x",
    "y",
    "ra",
    "dec",
    "x_orig",
    "y_orig",
    "ra_orig",
    "dec_orig",
    "centroided",
    "flux",
    "fluxerr",
    "bg_fluxerr",
    "bg_local",
    "sn",
    "mag",
    "magerr",
    MAG_CALIB_COLUMN,
    MAG_CALIB_ERR_COLUMN,
    MAG_CALIB_COLOR_COLUMN,
    MAG_LIMIT_COLUMN,
    "detected",
    "flags",
)


def _segment_ids(segmentation: NDArray | None, x: NDArray, y: NDArray) -> NDArray:
    """The detection segment under each position (0: none), so that a target that is
    itself a detected object is not flagged as its own neighbour."""
    if segmentation is None:
        return np.zeros(len(x), int)
    ny, nx = segmentation.shape
    ix, iy = np.floor(x + 0.5).astype(int), np.floor(y + 0.5).astype(int)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    ids = np.zeros(len(x), int)
    ids[inside] = segmentation[iy[inside], ix[inside]]
    return ids


def forced_photometry(
    image: NDArray,
    x: ArrayLike,
    y: ArrayLike,
    *,
    fwhm: float,
    mask: NDArray | None = None,
    background: NDArray | float | None = None,
    noise: NDArray | float | None = None,
    gain: float | None = None,
    rel_aper: float = 1.0,
    rel_bg1: float = 5.0,
    rel_bg2: float = 7.0,
    min_annulus_fraction: float = 0.5,
    segmentation: NDArray | None = None,
    wcs: WCS | None = None,
    calibration: CalibrationResult | None = None,
    sn_threshold: float = 5.0,
    centroid: bool = False,
) -> Table:
    """Measure fluxes, calibrated magnitudes and local limits at the given positions.

    Parameters
    ----------
    image : numpy.ndarray
        The image (ADU, background not subtracted).
    x, y : array-like
        0-based pixel positions.
    fwhm, mask, background, noise, gain, rel_aper, rel_bg1, rel_bg2, \
min_annulus_fraction, segmentation, wcs
        As for :func:`pipeline.measurement.measure_positions` (pass the photometry
        step's own).
    calibration : CalibrationResult, optional
        Without it the magnitudes and limits are instrumental (ZP = 0).
    sn_threshold : float
        S/N below which a target counts as not detected (the photometry step's ``sn``).
    centroid : bool
        Refine the positions first (see the module docstring).

    Returns
    -------
    astropy.table.Table
        :data:`PHOTOMETRY_COLUMNS`, one row per position, in order.
    """
    if not sn_threshold > 0:
        raise ValueError(f"the S/N threshold must be positive, not {sn_threshold}")
    x_orig = np.atleast_1d(np.asarray(x, float))
    y_orig = np.atleast_1d(np.asarray(y, float))

    def measure(xs: NDArray, ys: NDArray) -> Table:
        positions = Table({"x": xs, "y": ys, "id": _segment_ids(segmentation, xs, ys)})
        table = measure_positions(
            image,
            positions,
            fwhm=fwhm,
            mask=mask,
            background=background,
            noise=noise,
            gain=gain,
            rel_aper=rel_aper,
            rel_bg1=rel_bg1,
            rel_bg2=rel_bg2,
            sn_min=0.0,
            min_annulus_fraction=min_annulus_fraction,
            segmentation=segmentation,
            wcs=wcs,
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            table["sn"] = np.asarray(table["flux"], float) / np.asarray(table["fluxerr"], float)
        return table

    table = measure(x_orig, y_orig)
    xs, ys = x_orig.copy(), y_orig.copy()
    centroided = np.zeros(len(xs), bool)
    if centroid and len(xs):
        bad = ~np.isfinite(image) if mask is None else (mask != 0) | ~np.isfinite(image)
        level = 0.0 if background is None else background
        data = np.where(bad, 0.0, image - level).astype(np.float32)
        x_new, y_new = windowed_positions(data, x_orig, y_orig, fwhm, bad)
        moved = np.hypot(x_new - x_orig, y_new - y_orig) > 1e-3
        if moved.any():
            at_centroid = measure(x_new, y_new)
            # an upper limit must stay where it was asked for
            use = moved & (np.nan_to_num(np.asarray(at_centroid["sn"], float)) >= sn_threshold)
            for name in (*MEASURED_COLUMNS, "sn"):
                table[name][use] = at_centroid[name][use]
            xs[use], ys[use] = x_new[use], y_new[use]
            centroided = use
    table["x"], table["y"] = xs, ys
    ra_orig, dec_orig = sky_coordinates(wcs, x_orig, y_orig)
    return _with_magnitudes(
        table, x_orig, y_orig, ra_orig, dec_orig, centroided, calibration, sn_threshold
    )


def _with_magnitudes(
    table: Table,
    x_orig: NDArray,
    y_orig: NDArray,
    ra_orig: NDArray,
    dec_orig: NDArray,
    centroided: NDArray,
    calibration: CalibrationResult | None,
    sn_threshold: float,
) -> Table:
    """Add calibrated magnitudes, limits and detection; order the columns."""
    n = len(table)
    mag = np.asarray(table["mag"], float)
    magerr = np.asarray(table["magerr"], float)
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    if calibration is not None:
        colors = calibration.model.resolve_color(None, n)
        mag_calib, mag_calib_err = calibration.magnitude(mag, x, y, color=colors, mag_err=magerr)
    else:
        colors = np.zeros(n)
        mag_calib, mag_calib_err = mag.copy(), magerr.copy()
    sn = np.asarray(table["sn"], float)
    out = Table()
    out["x"], out["y"] = x, y
    out["ra"], out["dec"] = table["ra"], table["dec"]
    out["x_orig"], out["y_orig"] = x_orig, y_orig
    out["ra_orig"], out["dec_orig"] = ra_orig, dec_orig
    out["centroided"] = centroided
    for name in ("flux", "fluxerr", "bg_fluxerr", "bg_local"):
        out[name] = np.asarray(table[name], float)
    out["sn"] = sn
    out["mag"], out["magerr"] = mag, magerr
    out[MAG_CALIB_COLUMN] = np.where(np.isfinite(mag), mag_calib, np.nan)
    out[MAG_CALIB_ERR_COLUMN] = np.where(np.isfinite(mag), mag_calib_err, np.nan)
    out[MAG_CALIB_COLOR_COLUMN] = colors
    out[MAG_LIMIT_COLUMN] = local_limits(out, calibration, sn_threshold)
    out["detected"] = np.isfinite(sn) & (sn >= sn_threshold)
    out["flags"] = np.asarray(table["flags"], np.int32)
    return out[list(PHOTOMETRY_COLUMNS)]
