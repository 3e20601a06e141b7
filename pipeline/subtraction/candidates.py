"""Transient candidates in a difference image: detection, photometry, shape and dipole tests.

* Detection: connected pixels of the significance map (ZOGY S_corr, or the difference
  over its noise smoothed by the PSF for engines without one) above ``threshold``,
  outside masked pixels and ``edge`` pixels of the border.
* Photometry: :func:`pipeline.measurement.measure_positions` on the science-PSF
  difference with the science image's aperture and its noise map, then the science
  image's calibration; upper limits from the flux error.
* Shape: the science image's trained prefilter on the difference detections (0x800).
* Dipoles: :func:`pipeline.subtraction.dipole.adjust_candidate`.
"""

from __future__ import annotations

import numpy as np
import sep
from astropy.table import Table

from pipeline.background import as_sep_array
from pipeline.detection import auto_photometry
from pipeline.flags import ObjectFlag
from pipeline.fwhm import core_fwhm
from pipeline.measurement import measure_positions
from pipeline.subtraction.base import SubtractionProducts
from pipeline.subtraction.dipole import adjust_candidate

MAX_CANDIDATES = 20_000  # sep's object limit; beyond this the subtraction has failed


def gaussian_significance(products: SubtractionProducts, fwhm: float) -> np.ndarray:
    """Approximate S/N map for engines without one: PSF-smoothed difference over its noise."""
    from pipeline.detection import filter_image, gaussian_kernel

    kernel = gaussian_kernel(fwhm)
    weight = np.where(products.bad, 0.0, 1.0 / np.maximum(products.noise, 1e-30) ** 2)
    smooth = filter_image(products.difference * weight, kernel)
    norm = np.sqrt(filter_image(weight, kernel**2))
    return smooth / np.maximum(norm, 1e-30) / np.sqrt((kernel**2).sum()) * kernel.sum()


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


def flag_edge_and_mask(table: Table, bad: np.ndarray, fwhm: float) -> None:
    """Set FOOTPRINT_MASKED for candidates with masked pixels within one FWHM."""
    if len(table) == 0:
        return
    r = max(1, int(np.ceil(fwhm)))
    flags = np.asarray(table["flags"], np.int32)
    for i, (x, y) in enumerate(zip(table["x"], table["y"], strict=True)):
        ix, iy = round(x), round(y)
        box = bad[max(iy - r, 0) : iy + r + 1, max(ix - r, 0) : ix + r + 1]
        if box.any():
            flags[i] |= ObjectFlag.FOOTPRINT_MASKED
    table["flags"] = flags


def dipole_tests(
    image: np.ndarray,
    products: SubtractionProducts,
    table: Table,
    *,
    inner: float,
    max_shift: float,
    max_scale: float,
    p_value: float,
    chi2_drop: float,
) -> None:
    """Add the adjustment-test columns (``dipole_*``, ``dipole_rejected``) in place."""
    tests = [
        adjust_candidate(
            image,
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
        )
        for x, y in zip(table["x"], table["y"], strict=True)
    ]
    table["dipole_chi2_initial"] = [t.chi2_initial for t in tests]
    table["dipole_chi2"] = [t.chi2_adjusted for t in tests]
    table["dipole_dof"] = np.array([t.dof for t in tests], np.int32)
    table["dipole_p_value"] = [t.p_value for t in tests]
    table["dipole_dx"] = [t.dx for t in tests]
    table["dipole_dy"] = [t.dy for t in tests]
    table["dipole_scale"] = [t.scale for t in tests]
    table["dipole_rejected"] = np.array([t.rejected for t in tests], bool)
