"""Transient candidates in a difference image: detection, photometry, shape and dipole tests.

* Noise calibration: the significance map and the difference's noise map are rescaled
  so that they have unit robust scatter over the usable pixels
  (:func:`calibrate_noise`): resampled and stacked images have correlated noise that
  the per-pixel variance propagation of the engines does not know about.
* Local flux scale: the convolved template is multiplied by the median flux scale that
  the nearest bright isolated stars need (:func:`apply_local_scale`), so that hosts
  subtract cleanly where the image's zero point differs from its mean; the stars'
  scatter about it (colours) enters the magnitude errors (:func:`add_scale_error`).
* Detection: connected pixels of the significance map (ZOGY S_corr, or the difference
  over its noise smoothed by the PSF for engines without one) above ``threshold``,
  outside masked pixels and ``edge`` pixels of the border.
* Photometry: :func:`pipeline.measurement.measure_positions` on the science-PSF
  difference with the science image's aperture and its noise map, then the science
  image's calibration; upper limits from the flux error.
* Shape: the science image's trained prefilter on the difference detections (0x800).
* Masked pixels: the photometry flags a candidate whose aperture holds unusable pixels
  of the difference (0x200, ``APERTURE_MASKED``); masked pixels farther away do not
  disqualify it.
* Dipoles: :func:`pipeline.subtraction.dipole.adjust_candidate`, with the adjustment
  and model error measured on bright isolated stars of the same pair.
"""

from __future__ import annotations

import numpy as np
import sep
from astropy.table import Table
from scipy import ndimage

from pipeline.background import as_sep_array
from pipeline.detection import auto_photometry
from pipeline.fwhm import core_fwhm
from pipeline.measurement import measure_positions
from pipeline.subtraction.base import SubtractionInputs, SubtractionProducts
from pipeline.subtraction.dipole import (
    StarAdjustments,
    adjust_candidate,
    measure_star_adjustments,
)
from pipeline.subtraction.psf import PsfError, select_psf_stars

MAX_CANDIDATES = 20_000  # sep's object limit; beyond this the subtraction has failed
MAD_TO_SIGMA = 1.4826
MAG_ERR_FACTOR = 2.5 / np.log(10)  # magnitude error per relative flux error
ADJUSTMENT_STARS = 200  # bright isolated stars that measure the expected adjustment
MODEL_ERROR_QUANTILE = 0.9  # the model error level covers this fraction of those stars


def robust_sigma(values: np.ndarray) -> float:
    """Standard deviation from the median absolute deviation (NaN when empty)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values))))


def calibrate_noise(products: SubtractionProducts) -> dict[str, float]:
    """Rescale the significance and noise maps to unit robust scatter, in place.

    Returns the factors applied (``significance_scale`` divides the significance map,
    ``noise_scale`` multiplies the noise map); 1 when there is nothing to measure.
    """
    good = ~products.bad & (products.noise > 0)
    factors = {"significance_scale": 1.0, "noise_scale": 1.0}
    if good.sum() < 100:
        return factors
    ratio = robust_sigma(products.difference[good] / products.noise[good])
    if np.isfinite(ratio) and ratio > 0:
        products.noise *= ratio
        factors["noise_scale"] = ratio
    if products.significance is not None:
        spread = robust_sigma(products.significance[good])
        if np.isfinite(spread) and spread > 0:
            products.significance /= spread
            factors["significance_scale"] = spread
    return factors


def gaussian_significance(products: SubtractionProducts, fwhm: float) -> np.ndarray:
    """Approximate S/N map for engines without one: a Gaussian matched filter.

    ``S = Σ k·D/σ² / sqrt(Σ k²/σ²)`` over each pixel's neighbourhood: unit scatter on
    pure noise, whatever the FWHM (the Gaussian is separable, so both sums are two 1-D passes).
    """
    from pipeline.detection import gaussian_kernel

    profile = gaussian_kernel(fwhm).sum(axis=0).astype(float)  # 1-D, sums to 1

    def separable(data: np.ndarray, taps: np.ndarray) -> np.ndarray:
        out = ndimage.correlate1d(data, taps, axis=1, mode="constant")
        return ndimage.correlate1d(out, taps, axis=0, mode="constant")

    weight = np.where(products.bad, 0.0, 1.0 / np.maximum(products.noise, 1e-30) ** 2)
    smooth = separable(np.where(products.bad, 0.0, products.difference) * weight, profile)
    norm = np.sqrt(separable(weight, profile**2))
    return np.where(norm > 0, smooth / np.maximum(norm, 1e-30), 0.0)


def detect_candidates(
    significance: np.ndarray,
    bad: np.ndarray,
    threshold: float,
    minarea: int = 3,
    edge: int = 0,
    negative: bool = False,
) -> Table:
    """Peaks of a significance map above ``threshold`` (positive, or negative too)."""
    bad = bad.copy()
    if edge > 0:
        bad[:edge], bad[-edge:], bad[:, :edge], bad[:, -edge:] = True, True, True, True
    rows = []
    signs = (1.0, -1.0) if negative else (1.0,)
    sep.set_extract_pixstack(5_000_000)
    for sign in signs:
        data = as_sep_array(np.where(bad, 0.0, sign * significance))
        objects = sep.extract(
            data,
            threshold,
            mask=as_sep_array(bad, np.uint8),
            minarea=minarea,
            filter_kernel=None,
            deblend_cont=0.005,
        )
        if len(objects) > MAX_CANDIDATES:
            raise ValueError(
                f"{len(objects)} detections in the difference image: the subtraction failed "
                "(wrong template band, bad alignment?); check the difference image"
            )
        # the significance peak is the best position estimate of a point source
        x = objects["xcpeak"].astype(float)
        y = objects["ycpeak"].astype(float)
        rows.append(
            Table(
                {
                    "x": x,
                    "y": y,
                    "significance": sign * objects["cpeak"].astype(float),
                    "npix_sig": objects["npix"].astype(np.int32),
                }
            )
        )
    table = rows[0] if len(rows) == 1 else _vstack(rows)
    table["sign"] = np.sign(table["significance"]).astype(np.int8)
    return table


def _vstack(tables: list[Table]) -> Table:
    from astropy.table import vstack

    return vstack(tables)


def refine_positions(difference: np.ndarray, bad: np.ndarray, table: Table, fwhm: float) -> None:
    """Gaussian-windowed centroids on the (signed) difference, in place; kept if they fail."""
    if len(table) == 0:
        return
    sign = np.asarray(table["sign"], float)
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    for s in (1.0, -1.0):
        pick = sign == s
        if not pick.any():
            continue
        data = as_sep_array(np.where(bad, 0.0, s * difference))
        wx, wy, flag = sep.winpos(
            data,
            x[pick],
            y[pick],
            np.full(pick.sum(), fwhm / 2.3548),
            mask=as_sep_array(bad, np.uint8),
        )
        good = (flag == 0) & (np.hypot(wx - x[pick], wy - y[pick]) < 0.5 * fwhm)
        x[pick] = np.where(good, wx, x[pick])
        y[pick] = np.where(good, wy, y[pick])
    table["x"], table["y"] = x, y


def shape_columns(
    difference: np.ndarray, noise: np.ndarray, bad: np.ndarray, table: Table, fwhm: float
) -> None:
    """Add the columns the shape prefilter reads (moments, FWHM, Kron flux, peak), in place."""
    n = len(table)
    if n == 0:
        for name in ("a", "b", "theta", "peak", "fwhm", "flux_radius", "flux_auto", "fluxerr_auto"):
            table[name] = np.zeros(0)
        return
    sign = np.asarray(table["sign"], float)
    signed = difference * 1.0
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    a, b, theta, peak = (np.full(n, np.nan) for _ in range(4))
    half = int(np.ceil(1.5 * fwhm))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    ny, nx = difference.shape
    for i in range(n):
        ix, iy = round(x[i]), round(y[i])
        if not (half <= ix < nx - half and half <= iy < ny - half):
            continue
        stamp = sign[i] * signed[iy - half : iy + half + 1, ix - half : ix + half + 1]
        weight = np.clip(stamp, 0, None) * np.exp(-(xx**2 + yy**2) / (2 * (fwhm / 2.3548) ** 2))
        total = weight.sum()
        peak[i] = stamp[half, half] if stamp.size else np.nan
        if total <= 0:
            continue
        mx, my = (weight * xx).sum() / total, (weight * yy).sum() / total
        cxx = (weight * (xx - mx) ** 2).sum() / total
        cyy = (weight * (yy - my) ** 2).sum() / total
        cxy = (weight * (xx - mx) * (yy - my)).sum() / total
        common = np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
        # windowed moments shrink the true ones by the window; undo it for a Gaussian
        w2 = (fwhm / 2.3548) ** 2
        l1, l2 = (cxx + cyy) / 2 + common, (cxx + cyy) / 2 - common
        a[i] = np.sqrt(max(l1 * w2 / max(w2 - l1, 1e-3), 1e-4)) if l1 < w2 else 2 * fwhm
        b[i] = np.sqrt(max(l2 * w2 / max(w2 - l2, 1e-3), 1e-4)) if l2 < w2 else 2 * fwhm
        theta[i] = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
    table["a"], table["b"], table["theta"], table["peak"] = a, b, theta, peak
    fw = np.zeros(n)
    autos = {k: np.zeros(n) for k in ("flux_auto", "fluxerr_auto", "flux_radius", "kron_radius")}
    for s in (1.0, -1.0):
        pick = sign == s
        if not pick.any():
            continue
        data = as_sep_array(np.where(bad, 0.0, s * difference))
        fw[pick] = core_fwhm(data, x[pick], y[pick], fwhm, bad, np.median(noise[~bad]))
        res = auto_photometry(
            data,
            as_sep_array(noise),
            bad,
            x[pick],
            y[pick],
            np.nan_to_num(a[pick], nan=fwhm / 2.3548),
            np.nan_to_num(b[pick], nan=fwhm / 2.3548),
            np.nan_to_num(theta[pick]),
        )
        for key in autos:
            autos[key][pick] = res[key]
    table["fwhm"] = fw
    for key, value in autos.items():
        table[key] = value


def measure_candidates(
    products: SubtractionProducts,
    table: Table,
    *,
    fwhm: float,
    rel_aper: float,
    rel_bg1: float,
    rel_bg2: float,
    wcs=None,
) -> Table:
    """Aperture photometry of candidates on the difference (signed flux for negatives)."""
    measured = measure_positions(
        products.difference * 1.0,
        table,
        fwhm=fwhm,
        mask=products.bad,
        noise=products.noise,
        rel_aper=rel_aper,
        rel_bg1=rel_bg1,
        rel_bg2=rel_bg2,
        sn_min=0.0,
        wcs=wcs,
    )
    return measured


def star_adjustments(
    inputs: SubtractionInputs,
    products: SubtractionProducts,
    *,
    fwhm: float,
    inner: float,
    max_shift: float,
    max_scale: float,
) -> StarAdjustments:
    """The shift and scale the convolved template needs at bright isolated stars."""
    bad = inputs.image_bad | inputs.template_bad | products.bad
    try:
        stars = select_psf_stars(
            inputs.image, bad, inputs.image_noise, fwhm, inputs.image_saturation, ADJUSTMENT_STARS
        )
    except PsfError:  # no stars: flat priors within the bounds and no model error
        stars = np.zeros((0, 2))
    return measure_star_adjustments(
        inputs.image, products.convolved, products.noise, products.bad, stars, inner,
        max_shift, max_scale,
    )  # fmt: skip


def apply_local_scale(
    products: SubtractionProducts, adjustments: StarAdjustments
) -> tuple[StarAdjustments, dict[str, float]]:
    """Multiply the convolved template by the local flux scale of the stars, in place.

    One flux ratio serves the whole pair in the engines, but the zero point of an image
    varies over the field: a host galaxy then leaves a residual of a few per cent of its
    flux under a transient, biasing its photometry and its shape. The median scale of
    the nearest stars (:meth:`StarAdjustments.scale_map`) removes the part that varies
    over the field; what stays (colour differences between objects) is the dipole
    test's business and part of the magnitude errors (:func:`add_scale_error`).
    Returns the star adjustments relative to the rescaled template and the map's range.
    """
    scale = adjustments.scale_map(products.convolved.shape)
    products.difference -= (scale - 1.0) * products.convolved
    products.convolved *= scale
    products.difference[products.bad] = 0.0
    low, high = float(scale.min()), float(scale.max())
    return adjustments.relative_to(scale), {"local_scale_min": low, "local_scale_max": high}


def add_scale_error(
    products: SubtractionProducts,
    table: Table,
    adjustments: StarAdjustments,
    *,
    fwhm: float,
    radius: float,
) -> None:
    """Add the template's flux-scale uncertainty to the magnitude errors, in place.

    Objects of other colours need other flux scales (colour terms differ between the
    two instruments): the stars around a candidate scatter by a few per cent about their
    median scale, and that fraction of the template's flux in the aperture — a host
    galaxy's — is left in the difference, unknown. ``fluxerr_scale`` holds it;
    ``magerr`` combines it with ``fluxerr``, which stays the statistical error that the
    S/N cut uses.
    """
    n = len(table)
    table["fluxerr_scale"] = np.zeros(n)
    if n == 0 or len(adjustments) == 0:
        return
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    template_flux, _, _ = sep.sum_circle(
        as_sep_array(np.where(products.bad, 0.0, products.convolved)), x, y, radius
    )
    spread = np.array(
        [adjustments.prior_at(a, b, exclude=fwhm).sigma_scale for a, b in zip(x, y, strict=True)]
    )
    extra = np.nan_to_num(np.where(np.isfinite(spread), spread, 0.0) * np.abs(template_flux))
    table["fluxerr_scale"] = extra
    flux = np.abs(np.asarray(table["flux"], float))
    with np.errstate(divide="ignore", invalid="ignore"):
        total = np.hypot(np.asarray(table["fluxerr"], float), extra)
        table["magerr"] = np.where(flux > 0, MAG_ERR_FACTOR * total / flux, table["magerr"])


def dipole_tests(
    inputs: SubtractionInputs,
    products: SubtractionProducts,
    table: Table,
    adjustments: StarAdjustments,
    *,
    fwhm: float,
    inner: float,
    max_shift: float,
    max_scale: float,
    p_value: float,
    chi2_drop: float,
    source_sigma: float,
) -> dict[str, float]:
    """Add the adjustment-test columns (``dipole_*``, ``dipole_rejected``) in place.

    The expected scale near each candidate, and the model error, come from the star
    ``adjustments`` (:func:`star_adjustments`); returns what they gave, for the summary.
    """
    model_error = adjustments.model_error(MODEL_ERROR_QUANTILE)
    tests = [
        adjust_candidate(
            inputs.image,
            products.convolved,
            products.noise,
            products.bad,
            float(x),
            float(y),
            inner,
            max_shift,
            max_scale,
            p_value,
            chi2_drop,
            psf=inputs.image_psf,
            sign=float(sign),
            model_error=model_error,
            prior=adjustments.prior_at(float(x), float(y), exclude=fwhm),
            source_sigma=source_sigma,
        )
        for x, y, sign in zip(table["x"], table["y"], table["sign"], strict=True)
    ]
    table["dipole_chi2_initial"] = [t.chi2_initial for t in tests]
    table["dipole_chi2"] = [t.chi2_adjusted for t in tests]
    table["dipole_chi2_model"] = [t.chi2_model for t in tests]
    table["dipole_chi2_source"] = [t.chi2_source for t in tests]
    table["dipole_dof"] = np.array([t.dof for t in tests], np.int32)
    table["dipole_p_value"] = [t.p_value for t in tests]
    table["dipole_dx"] = [t.dx for t in tests]
    table["dipole_dy"] = [t.dy for t in tests]
    table["dipole_scale"] = [t.scale for t in tests]
    table["dipole_explained"] = np.array([t.explained for t in tests], bool)
    table["dipole_rejected"] = np.array([t.rejected for t in tests], bool)
    return {
        "n_adjustment_stars": len(adjustments),
        "adjustment_model_error": round(model_error, 5),
        "adjustment_scale_median": round(float(np.median(adjustments.scale)), 4)
        if len(adjustments)
        else None,
    }
