"""Quality figures against the truth of a simulated frame, shared by the SkySift and the
STDPipe benchmarks so that both are judged by the same code.

Imports only numpy, scipy and astropy: ``bench_stdpipe_baseline.py`` runs it in the
baseline venv, which does not have our package. The truth bundle it reads
(``bench_truth.fits``) is written by ``bench_frames.py`` from ``pipeline.simulate``.

Definitions (identical for both pipelines):

* a detection is assigned to the nearest true star with expected S/N > 3 within
  ``MATCH_RADIUS_PX``; **completeness** is the fraction of true stars with expected S/N > 10
  (1·FWHM aperture, the simulator's noise model) at least ``EDGE_PX`` from the border
  that received a detection;
* **flux ratio**: measured aperture flux / (true total flux × the true fraction of the
  PSF inside that aperture radius at the star's position), for isolated, unsaturated
  stars with expected S/N > 20; median and robust σ (1.4826·MAD);
* **ZP map error**: fitted ZP(x, y) minus (true ZP(x, y) + 2.5 log10 fraction) on a grid
  over the frame — the aperture correction is part of what a 1·FWHM calibration fits;
* **calibrated magnitude error**: calibrated magnitude (colour term applied with the
  catalogue colour) minus the true r magnitude, same star selection as the flux ratio;
* **WCS RMS**: distance between the pixel positions a solution gives to the sky positions
  of a 41×41 grid under the true WCS and that grid (as ``wcs_grid_difference``).
"""

from __future__ import annotations

import os
import resource
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from scipy.interpolate import RegularGridInterpolator
from scipy.spatial import cKDTree

TRUTH_FILE = "bench_truth.fits"
PERTURBED_FILE = "perturbed_wcs.fits"  # header only: the image header with the damaged WCS
MATCH_RADIUS_PX = 1.5
EDGE_PX = 5
COMPLETENESS_SN = 10.0
FLUX_SN = 20.0
ASSIGN_SN = 3.0


@dataclass
class Truth:
    """The truth of one simulated frame as the benchmarks need it."""

    stars: Table
    radii: np.ndarray
    grid_x: np.ndarray
    grid_y: np.ndarray
    fraction: np.ndarray  # (radius, y node, x node): PSF fraction inside the radius
    zero_point: np.ndarray  # (y node, x node): true ZP at colour 0
    shape: tuple[int, int]
    meta: dict
    wcs: WCS
    folder: str

    def fraction_at(self, radius: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True fraction of a star's flux inside ``radius`` at pixel (x, y)."""
        interpolate = RegularGridInterpolator(
            (self.radii, self.grid_y, self.grid_x),
            self.fraction,
            bounds_error=False,
            fill_value=None,
        )
        x = np.clip(np.asarray(x, float), self.grid_x[0], self.grid_x[-1])
        y = np.clip(np.asarray(y, float), self.grid_y[0], self.grid_y[-1])
        points = np.column_stack([np.full(x.size, float(radius)), y.ravel(), x.ravel()])
        return interpolate(points).reshape(x.shape)


def _wcs(header: fits.Header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def load_truth(folder: str | os.PathLike) -> Truth:
    """Read ``bench_truth.fits`` of a frame folder."""
    with fits.open(Path(folder) / TRUTH_FILE) as hdul:
        meta = {key.lower(): hdul[0].header[key] for key in hdul[0].header if key.startswith("T_")}
        meta = {key[2:]: value for key, value in meta.items()}
        stars = Table(hdul["STARS"].data)
        grid = hdul["FRACTION"].header
        fraction = np.asarray(hdul["FRACTION"].data, float)
        zero_point = np.asarray(hdul["ZPGRID"].data, float)
        wcs = _wcs(hdul["TRUEWCS"].header)
    radii = grid["R0"] + grid["DR"] * np.arange(fraction.shape[0])
    grid_x = grid["X0"] + grid["STEP"] * np.arange(fraction.shape[2])
    grid_y = grid["Y0"] + grid["STEP"] * np.arange(fraction.shape[1])
    shape = (int(meta["ny"]), int(meta["nx"]))
    return Truth(stars, radii, grid_x, grid_y, fraction, zero_point, shape, meta, wcs, str(folder))


def read_perturbed_wcs(folder: str | os.PathLike) -> tuple[fits.Header, WCS]:
    """The damaged header (20″, 0.2°) both pipelines start their astrometry from."""
    header = fits.getheader(Path(folder) / PERTURBED_FILE)
    return header, _wcs(header)


def robust_sigma(values: np.ndarray) -> float:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def assign(truth: Truth, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index into ``truth.stars`` of the star each detection belongs to, or -1."""
    stars = truth.stars
    candidates = np.flatnonzero(np.asarray(stars["in_image"]) & (stars["snr"] > ASSIGN_SN))
    tree = cKDTree(np.column_stack([stars["x"][candidates], stars["y"][candidates]]))
    distance, nearest = tree.query(np.column_stack([np.asarray(x, float), np.asarray(y, float)]))
    owner = candidates[np.minimum(nearest, len(candidates) - 1)]
    return np.where(distance <= MATCH_RADIUS_PX, owner, -1)


def completeness(truth: Truth, x: np.ndarray, y: np.ndarray) -> dict:
    """Fraction of true stars with expected S/N > 10 that have a detection."""
    stars = truth.stars
    ny, nx = truth.shape
    sx, sy = np.asarray(stars["x"]), np.asarray(stars["y"])
    wanted = (
        np.asarray(stars["in_image"])
        & (np.asarray(stars["snr"]) > COMPLETENESS_SN)
        & (sx >= EDGE_PX)
        & (sy >= EDGE_PX)
        & (sx <= nx - 1 - EDGE_PX)
        & (sy <= ny - 1 - EDGE_PX)
    )
    owners = assign(truth, x, y)
    detected = np.zeros(len(stars), bool)
    detected[owners[owners >= 0]] = True
    n_true = int(wanted.sum())
    n_found = int((wanted & detected).sum())
    return {
        "completeness": round(n_found / n_true, 5) if n_true else None,
        "n_true_sn10": n_true,
        "n_found_sn10": n_found,
        "n_unassigned": int(np.sum(owners < 0)),
    }


def _isolated_bright(truth: Truth) -> np.ndarray:
    stars = truth.stars
    return (
        np.asarray(stars["isolated"])
        & ~np.asarray(stars["saturated"])
        & (np.asarray(stars["snr"]) > FLUX_SN)
    )


def flux_ratio(truth: Truth, x: np.ndarray, y: np.ndarray, flux: np.ndarray, radius: float) -> dict:
    """Measured / true aperture flux of isolated unsaturated S/N > 20 stars."""
    owners = assign(truth, x, y)
    good = owners >= 0
    owners, flux = owners[good], np.asarray(flux, float)[good]
    keep = _isolated_bright(truth)[owners]
    owners, flux = owners[keep], flux[keep]
    stars = truth.stars
    expected = np.asarray(stars["flux"])[owners] * truth.fraction_at(
        radius, np.asarray(stars["x"])[owners], np.asarray(stars["y"])[owners]
    )
    ratio = flux / expected
    return {
        "flux_ratio_median": round(float(np.median(ratio)), 5) if ratio.size else None,
        "flux_ratio_sigma": round(robust_sigma(ratio), 5),
        "n_flux_stars": int(ratio.size),
    }


def calibrated_mag_error(
    truth: Truth,
    x: np.ndarray,
    y: np.ndarray,
    mag: np.ndarray,
    color_term: float | None = None,
) -> dict:
    """Calibrated minus true magnitude for the flux-ratio stars.

    ``mag`` is the calibrated magnitude; when it does not yet include the colour term
    (STDPipe's ``mag + zero_fn``), pass ``color_term`` and ``C·(g−r)`` of the star's
    catalogue entry is added, as a user would.
    """
    owners = assign(truth, x, y)
    good = owners >= 0
    owners, mag = owners[good], np.asarray(mag, float)[good]
    if color_term is not None:
        mag = mag + color_term * np.asarray(truth.stars["g_r_cat"])[owners]
    keep = _isolated_bright(truth)[owners] & np.isfinite(mag)
    difference = mag[keep] - np.asarray(truth.stars["mag"])[owners[keep]]
    return {
        "mag_error_median": round(float(np.median(difference)), 5) if difference.size else None,
        "mag_error_sigma": round(robust_sigma(difference), 5),
        "n_mag_stars": int(difference.size),
    }


def zero_point_error(truth: Truth, zero_point, radius: float) -> dict:
    """Fitted ZP(x, y) against the true ZP plus the aperture correction, on the truth grid."""
    gx, gy = np.meshgrid(truth.grid_x, truth.grid_y)
    fitted = np.asarray(zero_point(gx.ravel(), gy.ravel()), float)
    fraction = truth.fraction_at(radius, gx.ravel(), gy.ravel())
    expected = truth.zero_point.ravel() + 2.5 * np.log10(fraction)
    difference = fitted - expected
    return {
        "zp_map_rms": round(float(np.sqrt(np.mean(difference**2))), 5),
        "zp_map_mean": round(float(np.mean(difference)), 5),
    }


def wcs_rms(wcs: WCS, truth: Truth, n: int = 41) -> dict:
    """RMS and maximum distance (pixels) between ``wcs`` and the true WCS over the frame."""
    ny, nx = truth.shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
    ra, dec = truth.wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
    x, y = wcs.all_world2pix(ra, dec, 0)
    distance = np.hypot(x - gx.ravel(), y - gy.ravel())
    return {
        "wcs_rms_px": round(float(np.sqrt(np.mean(distance**2))), 5),
        "wcs_max_px": round(float(np.max(distance)), 5),
    }


def fwhm_error(truth: Truth, fwhm: float) -> dict:
    return {
        "fwhm": round(float(fwhm), 4),
        "fwhm_truth": round(float(truth.meta["fwhm_median"]), 4),
        "fwhm_error": round(float(fwhm) - float(truth.meta["fwhm_median"]), 4),
    }


def cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its finished child processes
    (SExtractor, SCAMP, solve-field run as programs)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def median_record(records: list[dict]) -> dict:
    """Median of every number over repeated runs (nested dicts), other values from the last."""
    out: dict = {}
    for key, value in records[-1].items():
        values = [r.get(key) for r in records]
        if isinstance(value, dict):
            out[key] = median_record([v for v in values if isinstance(v, dict)])
        elif isinstance(value, bool) or not isinstance(value, int | float):
            out[key] = value
        else:
            numbers = [v for v in values if isinstance(v, int | float) and np.isfinite(v)]
            out[key] = round(statistics.median(numbers), 5) if numbers else None
    return out
