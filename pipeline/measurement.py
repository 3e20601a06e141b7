"""Aperture photometry at given positions with a local annulus background.

One routine, :func:`measure_positions`, measures detected objects (S/N cut 5
by default) and forced positions (S/N cut 0) alike.

* Flux: photutils ``aperture_photometry`` (exact pixel overlap) in a circle of
  ``rel_aper``·FWHM on the image minus its global background map; masked pixels
  are left out of the sum.
* Local background: 3σ-clipped median of the unmasked annulus pixels between
  ``rel_bg1`` and ``rel_bg2``·FWHM, pixels of detected objects left out. It is
  computed for all objects at once on sorted pixel arrays (photutils'
  ``ApertureStats`` with sigma clipping takes ~6 s for 10 000 annuli).
* Error: background noise map² summed over the aperture + source Poisson
  noise (flux/gain) + the error of the local background times the area.
"""

from __future__ import annotations

import math

import numpy as np
import sep
from astropy.table import Table
from astropy.wcs import WCS
from photutils.aperture import CircularAperture, aperture_photometry
from pydantic import Field, model_validator

from pipeline.background import as_sep_array
from pipeline.flags import ObjectFlag
from pipeline.steps.base import StepConfig

# Columns of the objects table, in order: the one list every writer and reader uses.
OBJECT_COLUMNS = (
    "x",  # 0-based pixel position
    "y",
    "ra",  # degrees, NaN without a usable WCS
    "dec",
    "flux",  # aperture flux minus local background, ADU
    "fluxerr",
    "mag",  # instrumental: -2.5 log10(flux)
    "magerr",
    "bg_local",  # background level per pixel at the object (global map + annulus residual)
    "bg_fluxerr",  # background-only error of the aperture flux (for detection limits)
    "fwhm",  # per-object FWHM, pixels
    "flux_radius",
    "a",
    "b",
    "theta",
    "peak",
    "npix",
    "flux_auto",
    "fluxerr_auto",
    "mag_auto",
    "flags",
)
MAG_ERR_FACTOR = 2.5 / math.log(10)
CLIP_SIGMA = 3.0
CLIP_ITERATIONS = 5
MIN_ANNULUS_PIXELS = 10  # below this the annulus median is not trusted at all
BATCH_ELEMENTS = 2_000_000  # pixels per vectorised annulus batch (bounds memory)


class MeasurementConfig(StepConfig):
    """Parameters of aperture photometry (part of the photometry step config)."""

    rel_aper: float = Field(
        1.0, gt=0, le=10, description="Aperture radius in units of the image FWHM."
    )
    rel_bg1: float = Field(
        5.0, gt=0, le=50, description="Inner radius of the background annulus, in FWHM."
    )
    rel_bg2: float = Field(
        7.0, gt=0, le=60, description="Outer radius of the background annulus, in FWHM."
    )
    sn: float = Field(
        5.0, ge=0, description="Minimum S/N of a measured object; fainter ones are dropped."
    )
    min_annulus_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Flag the background (0x400) if fewer annulus pixels than this are usable.",
    )

    @model_validator(mode="after")
    def _radii_in_order(self):
        if not self.rel_aper <= self.rel_bg1 < self.rel_bg2:
            raise ValueError(
                "radii must satisfy rel_aper <= rel_bg1 < rel_bg2 "
                f"(got {self.rel_aper}, {self.rel_bg1}, {self.rel_bg2})"
            )
        return self


def clipped_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise σ-clipped median, σ and count of a 2-D array with NaN for missing values.

    Each row is sorted once; clipping then only moves the ends of a contiguous
    window, and the median and σ (half the 16–84 % range) are read by index.
    """
    rows = np.sort(values, axis=1)  # NaN sorts last
    n_rows, width = rows.shape
    lo = np.zeros(n_rows, int)
    hi = np.isfinite(rows).sum(axis=1)
    index = np.arange(n_rows)

    def quantile(q):
        count = hi - lo
        pos = lo + q * np.maximum(count - 1, 0)
        low = np.clip(np.floor(pos).astype(int), 0, width - 1)
        high = np.clip(low + 1, 0, width - 1)
        frac = pos - np.floor(pos)
        upper = np.where(high < hi, rows[index, high], rows[index, low])
        return (1 - frac) * rows[index, low] + frac * upper

    for _ in range(CLIP_ITERATIONS):
        median = quantile(0.5)
        sigma = 0.5 * (quantile(0.8413) - quantile(0.1587))
        low_bound = (median - CLIP_SIGMA * sigma)[:, None]
        high_bound = (median + CLIP_SIGMA * sigma)[:, None]
        new_lo = (rows < low_bound).sum(axis=1)
        new_hi = np.minimum((rows <= high_bound).sum(axis=1), hi)
        settled = (new_lo == lo) & (new_hi == hi)
        usable = new_hi - new_lo >= MIN_ANNULUS_PIXELS
        lo = np.where(usable, new_lo, lo)
        hi = np.where(usable, new_hi, hi)
        if settled.all():
            break
    median = quantile(0.5)
    sigma = 0.5 * (quantile(0.8413) - quantile(0.1587))
    count = hi - lo
    empty = count <= 0
    median[empty] = np.nan
    sigma[empty] = np.nan
    return median, sigma, count


def _annulus_offsets(aperture: float, inner: float, outer: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets that can fall in the annulus or the aperture for any sub-pixel centre."""
    half = math.ceil(outer) + 1
    grid = np.arange(-half, half + 1)
    dy, dx = np.meshgrid(grid, grid, indexing="ij")
    radius = np.hypot(dx, dy).ravel()
    near = (radius <= outer + 1) & ((radius >= inner - 1) | (radius <= aperture + 1.5))
    return dx.ravel()[near], dy.ravel()[near]


def annulus_background(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    r_aper: float,
    r_in: float,
    r_out: float,
    bad: np.ndarray,
    segmentation: np.ndarray | None = None,
    ids: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Local background in annuli, fraction of usable annulus pixels, neighbour test.

    Returns a dict with ``median``, ``sigma``, ``count`` (pixels kept after
    clipping), ``good_fraction`` (unmasked in-image pixels / annulus pixels) and
    ``neighbours`` (another object's footprint reaches into the aperture).
    """
    dx, dy = _annulus_offsets(r_aper, r_in, r_out)
    batch = max(64, BATCH_ELEMENTS // len(dx))
    ny, nx = data.shape
    n = len(x)
    out = {
        "median": np.full(n, np.nan),
        "sigma": np.full(n, np.nan),
        "count": np.zeros(n, int),
        "good_fraction": np.zeros(n),
        "neighbours": np.zeros(n, bool),
    }
    for start in range(0, n, batch):
        part = slice(start, start + batch)
        xs, ys = np.asarray(x[part], float), np.asarray(y[part], float)
        ix, iy = np.rint(xs).astype(int), np.rint(ys).astype(int)
        px = ix[:, None] + dx[None, :]
        py = iy[:, None] + dy[None, :]
        dist = np.hypot(px - xs[:, None], py - ys[:, None])
        inside = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
        pxc, pyc = np.clip(px, 0, nx - 1), np.clip(py, 0, ny - 1)
        in_annulus = (dist >= r_in) & (dist <= r_out)
        usable = inside & ~bad[pyc, pxc]
        values = data[pyc, pxc].astype(float)
        total = np.maximum(in_annulus.sum(axis=1), 1)
        out["good_fraction"][part] = (in_annulus & usable).sum(axis=1) / total
        keep = in_annulus & usable
        if segmentation is not None:
            seg = np.where(inside, segmentation[pyc, pxc], 0)
            sky = keep & (seg == 0)
            # Without enough sky pixels (inside a big galaxy) fall back to clipping alone.
            enough = sky.sum(axis=1) >= MIN_ANNULUS_PIXELS
            keep = np.where(enough[:, None], sky, keep)
            if ids is not None:
                own = np.asarray(ids[part])[:, None]
                other = (seg > 0) & (seg != own)
            else:
                other = np.zeros_like(seg, bool)
            out["neighbours"][part] = (other & (dist <= r_aper + 0.5)).any(axis=1)
        median, sigma, count = clipped_stats(np.where(keep, values, np.nan))
        out["median"][part] = median
        out["sigma"][part] = sigma
        out["count"][part] = count
    return out


def sky_coordinates(wcs: WCS | None, x: np.ndarray, y: np.ndarray) -> tuple:
    """RA, Dec in degrees for 0-based pixel positions, NaN without a usable celestial WCS."""
    nan = np.full(len(x), np.nan)
    if wcs is None or not wcs.has_celestial or len(x) == 0:
        return nan, nan.copy()
    try:
        ra, dec = wcs.celestial.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
    except Exception:  # a broken distortion model must not lose the photometry
        return nan, nan.copy()
    return np.asarray(ra, float), np.asarray(dec, float)


def _as_table(positions) -> Table:
    if isinstance(positions, Table):
        return positions.copy(copy_data=True)
    array = np.atleast_2d(np.asarray(positions, float))
    if array.size == 0:
        array = np.zeros((0, 2))
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError("positions must be an (N, 2) array of x, y or a table with x, y columns")
    return Table({"x": array[:, 0], "y": array[:, 1]})


def measure_positions(
    image: np.ndarray,
    positions,
    *,
    fwhm: float,
    mask: np.ndarray | None = None,
    background: np.ndarray | float | None = None,
    noise: np.ndarray | float | None = None,
    gain: float | None = None,
    rel_aper: float = 1.0,
    rel_bg1: float = 5.0,
    rel_bg2: float = 7.0,
    sn_min: float = 0.0,
    min_annulus_fraction: float = 0.5,
    segmentation: np.ndarray | None = None,
    wcs: WCS | None = None,
) -> Table:
    """Aperture photometry with local background at the given positions.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image in ADU.
    positions : array-like or astropy.table.Table
        (N, 2) x, y (0-based), or a table with ``x``, ``y`` whose other columns
        are carried to the output (and an ``id`` column naming the object's own
        segment, so that it is not counted as a neighbour).
    fwhm : float
        Image FWHM in pixels; apertures scale with it.
    mask : numpy.ndarray, optional
        Nonzero for pixels to leave out of all sums.
    background, noise : numpy.ndarray or float, optional
        Global background map (subtracted before measuring) and per-pixel noise
        (RMS) map. Without ``noise`` the clipped annulus σ is used.
    gain : float, optional
        e-/ADU for the source Poisson noise; None or ≤0 leaves it out.
    rel_aper, rel_bg1, rel_bg2 : float
        Aperture and annulus radii in units of ``fwhm``.
    sn_min : float
        Rows with flux/fluxerr below this are dropped (0 keeps everything).
    min_annulus_fraction : float
        Below this fraction of usable annulus pixels the row is flagged 0x400.
    segmentation : numpy.ndarray, optional
        Detection segmentation map: object pixels stay out of the annulus.
    wcs : astropy.wcs.WCS, optional
        Gives ``ra``, ``dec``.

    Returns
    -------
    astropy.table.Table
        :data:`OBJECT_COLUMNS` (plus carried columns), flags OR-ed into any
        carried ``flags``.
    """
    if not (np.isfinite(fwhm) and fwhm > 0):
        raise ValueError(f"FWHM must be a positive number of pixels, got {fwhm!r}")
    if not rel_aper <= rel_bg1 < rel_bg2:
        raise ValueError("radii must satisfy rel_aper <= rel_bg1 < rel_bg2")
    table = _as_table(positions)
    image = np.asarray(image)
    bad = ~np.isfinite(image)
    if mask is not None:
        bad |= np.asarray(mask) != 0
    data = image - (0.0 if background is None else background)
    data = np.where(bad, 0.0, data)
    x = np.asarray(table["x"], float)
    y = np.asarray(table["y"], float)
    r_aper, r_in, r_out = rel_aper * fwhm, rel_bg1 * fwhm, rel_bg2 * fwhm

    n = len(table)
    flags = np.zeros(n, np.int32)
    if n:
        noise_map = noise if isinstance(noise, np.ndarray) else None
        phot = aperture_photometry(
            data, CircularAperture(np.column_stack([x, y]), r=r_aper), error=noise_map, mask=bad
        )
        aperture_sum = np.asarray(phot["aperture_sum"], float)
        noise_var = (
            np.asarray(phot["aperture_sum_err"], float) ** 2 if noise_map is not None else None
        )
        # Exact usable area and image-edge truncation from sep (fast, C).
        ones = as_sep_array((~bad).astype(np.float32))
        area, _, sep_flags = sep.sum_circle(ones, x, y, r_aper, subpix=0)
        masked_area, _, _ = sep.sum_circle(as_sep_array(bad.astype(np.float32)), x, y, r_aper)
        ann = annulus_background(
            data,
            x,
            y,
            r_aper,
            r_in,
            r_out,
            bad,
            segmentation,
            table["id"].data if "id" in table.colnames else None,
        )
    else:
        aperture_sum = area = masked_area = np.zeros(0)
        noise_var = None
        sep_flags = np.zeros(0, int)
        ann = {k: np.zeros(0) for k in ("median", "sigma", "count", "good_fraction")}
        ann["neighbours"] = np.zeros(0, bool)

    local = np.nan_to_num(ann["median"], nan=0.0)
    sigma_pix = ann["sigma"]
    if noise_var is None:
        noise_var = area * np.nan_to_num(sigma_pix, nan=0.0) ** 2
    flux = aperture_sum - local * area
    # Median of n clipped pixels: error ≈ σ·sqrt(π/(2n)).
    local_err = np.nan_to_num(sigma_pix, nan=0.0) * np.sqrt(
        math.pi / 2 / np.maximum(ann["count"], 1)
    )
    bg_var = noise_var + (area * local_err) ** 2
    source_var = np.clip(flux, 0, None) / gain if gain and gain > 0 else 0.0
    fluxerr = np.sqrt(bg_var + source_var)
    flux = np.where(area > 0, flux, np.nan)
    fluxerr = np.where(area > 0, fluxerr, np.nan)

    flags[masked_area > 1e-6] |= ObjectFlag.APERTURE_MASKED
    flags[(np.asarray(sep_flags) & sep.APER_TRUNC) != 0] |= ObjectFlag.APERTURE_INCOMPLETE
    flags[ann["good_fraction"] < min_annulus_fraction] |= ObjectFlag.ANNULUS_BAD
    flags[ann["neighbours"]] |= ObjectFlag.NEIGHBOURS

    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, -2.5 * np.log10(flux), np.nan)
        magerr = np.where(flux > 0, MAG_ERR_FACTOR * fluxerr / flux, np.nan)
    ra, dec = sky_coordinates(wcs, x, y)
    background_here = _value_at(background, x, y)
    table["ra"], table["dec"] = ra, dec
    table["flux"], table["fluxerr"] = flux, fluxerr
    table["mag"], table["magerr"] = mag, magerr
    table["bg_local"] = background_here + local
    table["bg_fluxerr"] = np.sqrt(bg_var)
    if "flux_auto" in table.colnames:
        with np.errstate(divide="ignore", invalid="ignore"):
            auto = np.asarray(table["flux_auto"], float)
            table["mag_auto"] = np.where(auto > 0, -2.5 * np.log10(auto), np.nan)
    carried = np.asarray(table["flags"], np.int32) if "flags" in table.colnames else 0
    table["flags"] = (carried | flags).astype(np.int32)
    table = with_object_columns(table)
    if sn_min > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = np.asarray(table["flux"] / table["fluxerr"] >= sn_min)
        table = table[np.nan_to_num(keep, nan=False).astype(bool)]
    return table


def _value_at(values: np.ndarray | float | None, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A map's value at the nearest pixel (or a constant) for each position."""
    if values is None:
        return np.zeros(len(x))
    if np.ndim(values) == 0:
        return np.full(len(x), float(values))
    ny, nx = values.shape
    ix = np.clip(np.rint(x).astype(int), 0, nx - 1)
    iy = np.clip(np.rint(y).astype(int), 0, ny - 1)
    return np.asarray(values[iy, ix], float)


def with_object_columns(table: Table) -> Table:
    """Ensure every :data:`OBJECT_COLUMNS` column exists (NaN/0 filled) and comes first."""
    for name in OBJECT_COLUMNS:
        if name not in table.colnames:
            if name in ("npix", "flags"):
                table[name] = np.zeros(len(table), np.int32)
            else:
                table[name] = np.full(len(table), np.nan)
    rest = [name for name in table.colnames if name not in OBJECT_COLUMNS]
    return table[list(OBJECT_COLUMNS) + rest]
