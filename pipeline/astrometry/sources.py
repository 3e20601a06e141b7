"""The two star lists astrometry works with: our detections and the reference stars.

Detections come from the object table of the photometry step (0-based ``x``,
``y``, ``flux``/``mag``, ``flags``); only unflagged objects are used, brightest
first. Reference stars come from a catalogue table in a VizieR layout
(``RAJ2000``/``DEJ2000`` and a magnitude column such as PS1 ``rmag``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

from pipeline.astrometry.errors import AstrometryError
from pipeline.flags import ObjectFlag

# Column spellings, most common first; the one place these lists live.
RA_COLUMNS = ("RAJ2000", "RA_ICRS", "RAdeg", "ra", "RA", "_RAJ2000")
DEC_COLUMNS = ("DEJ2000", "DE_ICRS", "DEdeg", "dec", "DEC", "_DEJ2000")
MAG_COLUMNS = (
    "rmag",
    "rPSFmag",
    "Rmag",
    "phot_g_mean_mag",
    "Gmag",
    "gmag",
    "imag",
    "Vmag",
    "zmag",
    "Jmag",
    "mag",
)
# When too few objects are unflagged, these flags still exclude an object:
# its position is unreliable (saturated core, cut by the edge, not star-like).
POSITION_FLAGS = ObjectFlag.SATURATED | ObjectFlag.EDGE_TRUNCATED | ObjectFlag.SHAPE_OUTLIER
MIN_UNFLAGGED = 20


@dataclass
class Detections:
    """Detected objects usable for astrometry, brightest first.

    Attributes
    ----------
    x, y : numpy.ndarray
        0-based pixel positions.
    flux : numpy.ndarray
        Relative brightness (larger is brighter).
    index : numpy.ndarray
        Row numbers in the object table they came from.
    used_flagged : bool
        True when flagged objects had to be used because too few were unflagged.
    """

    x: NDArray
    y: NDArray
    flux: NDArray
    index: NDArray
    used_flagged: bool = False

    def __len__(self) -> int:
        return len(self.x)

    @property
    def xy(self) -> NDArray:
        return np.c_[self.x, self.y]

    def first(self, count: int | None) -> Detections:
        """The ``count`` brightest (all if None)."""
        cut = slice(None) if count is None else slice(0, int(count))
        return Detections(
            self.x[cut], self.y[cut], self.flux[cut], self.index[cut], self.used_flagged
        )


@dataclass
class ReferenceStars:
    """Reference catalogue stars, brightest first (stars without magnitude last)."""

    ra: NDArray
    dec: NDArray
    mag: NDArray
    index: NDArray  # row numbers in the catalogue table
    mag_column: str | None = None

    def __len__(self) -> int:
        return len(self.ra)

    def subset(self, keep: NDArray) -> ReferenceStars:
        return ReferenceStars(
            self.ra[keep], self.dec[keep], self.mag[keep], self.index[keep], self.mag_column
        )


def _column(table: Table, name: str) -> NDArray:
    column = table[name]
    if hasattr(column, "filled"):
        column = column.filled(np.nan) if column.dtype.kind == "f" else column
    return np.asarray(column, dtype=float)


def _brightness(objects: Table) -> NDArray:
    if "flux" in objects.colnames:
        return _column(objects, "flux")
    if "mag" in objects.colnames:
        return 10 ** (-0.4 * _column(objects, "mag"))
    if "flux_auto" in objects.colnames:
        return _column(objects, "flux_auto")
    raise AstrometryError(
        "the object table has no flux, mag or flux_auto column: run the photometry "
        "measurement before astrometry"
    )


def select_detections(objects: Table, max_count: int | None = None) -> Detections:
    """Unflagged objects with finite positions and positive flux, brightest first.

    When fewer than :data:`MIN_UNFLAGGED` objects are unflagged, objects with
    flags that do not spoil a position (neighbours, masked aperture pixels,
    ...) are used as well and ``used_flagged`` is set.

    Raises
    ------
    AstrometryError
        If the table lacks ``x``/``y`` columns.
    """
    missing = [name for name in ("x", "y") if name not in objects.colnames]
    if missing:
        raise AstrometryError(
            f"the object table lacks the column(s) {missing}: astrometry needs 0-based "
            "pixel positions x, y"
        )
    x, y = _column(objects, "x"), _column(objects, "y")
    flux = _brightness(objects)
    flags = (
        np.asarray(objects["flags"], np.int64)
        if "flags" in objects.colnames
        else np.zeros(len(objects), np.int64)
    )
    usable = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux) & (flux > 0)
    good = usable & (flags == 0)
    used_flagged = False
    if good.sum() < MIN_UNFLAGGED:
        relaxed = usable & ((flags & int(POSITION_FLAGS)) == 0)
        used_flagged = bool(relaxed.sum() > good.sum())
        good = relaxed
    index = np.flatnonzero(good)
    index = index[np.argsort(-flux[index], kind="stable")]
    if max_count is not None:
        index = index[: int(max_count)]
    return Detections(x[index], y[index], flux[index], index, used_flagged)


def find_column(table: Table, candidates: tuple[str, ...], what: str) -> str:
    """The first of ``candidates`` present in ``table`` (case-sensitive, then not)."""
    for name in candidates:
        if name in table.colnames:
            return name
    lower = {name.lower(): name for name in table.colnames}
    for name in candidates:
        if name.lower() in lower:
            return lower[name.lower()]
    raise AstrometryError(
        f"the reference catalogue has no {what} column (looked for {', '.join(candidates)}; "
        f"it has {', '.join(table.colnames[:20])})"
    )


def reference_stars(catalog: Table, mag_column: str | None = None) -> ReferenceStars:
    """Reference stars with finite coordinates, brightest first.

    Parameters
    ----------
    catalog : astropy.table.Table
        Catalogue with RA/Dec in degrees (``RAJ2000``/``DEJ2000`` or another
        spelling of :data:`RA_COLUMNS`/:data:`DEC_COLUMNS`).
    mag_column : str, optional
        Magnitude used for the brightness order; the first of
        :data:`MAG_COLUMNS` present by default. Without any, the catalogue order
        is kept.
    """
    ra_name = find_column(catalog, RA_COLUMNS, "right ascension")
    dec_name = find_column(catalog, DEC_COLUMNS, "declination")
    ra, dec = _column(catalog, ra_name), _column(catalog, dec_name)
    if mag_column is not None and mag_column not in catalog.colnames:
        raise AstrometryError(
            f"the reference catalogue has no magnitude column {mag_column!r}; "
            f"it has {', '.join(catalog.colnames[:20])}"
        )
    if mag_column is None:
        present = [name for name in MAG_COLUMNS if name in catalog.colnames]
        mag_column = present[0] if present else None
    mag = _column(catalog, mag_column) if mag_column else np.zeros(len(catalog))
    good = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
    index = np.flatnonzero(good)
    # stars without a magnitude go last, in catalogue order
    order_key = np.where(np.isfinite(mag[index]), mag[index], np.inf)
    index = index[np.argsort(order_key, kind="stable")]
    return ReferenceStars(ra[index] % 360.0, dec[index], mag[index], index, mag_column)


def field_centre_and_radius(wcs: WCS, shape: tuple[int, int]) -> tuple[float, float, float]:
    """Sky position of the image centre and the radius (deg) reaching its corners."""
    ny, nx = shape
    xs = np.array([(nx - 1) / 2.0, 0, nx - 1, 0, nx - 1])
    ys = np.array([(ny - 1) / 2.0, 0, 0, ny - 1, ny - 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra, dec = wcs.all_pix2world(xs, ys, 0)
    radius = angular_distance(ra[0], dec[0], ra[1:], dec[1:]).max()
    return float(ra[0]), float(dec[0]), float(radius)


def angular_distance(ra1: ArrayLike, dec1: ArrayLike, ra2: ArrayLike, dec2: ArrayLike) -> NDArray:
    """Great-circle distance in degrees (haversine, accurate at small separations)."""
    r1, d1 = np.deg2rad(np.asarray(ra1, float)), np.deg2rad(np.asarray(dec1, float))
    r2, d2 = np.deg2rad(np.asarray(ra2, float)), np.deg2rad(np.asarray(dec2, float))
    s = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.rad2deg(2 * np.arcsin(np.sqrt(np.clip(s, 0, 1))))


def project_to_pixels(
    refs: ReferenceStars, wcs: WCS, shape: tuple[int, int], margin_px: float
) -> tuple[ReferenceStars, NDArray, NDArray]:
    """Reference stars falling on the image (plus ``margin_px``) and their pixel positions.

    Stars far from the field are cut on the sphere first, so that the iterative
    inverse of a distorted WCS is never asked about points it cannot reach.
    """
    if len(refs) == 0:
        return refs, np.zeros(0), np.zeros(0)
    ny, nx = shape
    ra0, dec0, radius = field_centre_and_radius(wcs, shape)
    scale_deg = pixel_scale_deg(wcs, shape)
    near = angular_distance(ra0, dec0, refs.ra, refs.dec) < radius + 1.5 * margin_px * scale_deg
    refs = refs.subset(near)
    if len(refs) == 0:
        return refs, np.zeros(0), np.zeros(0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        x, y = wcs.all_world2pix(refs.ra, refs.dec, 0, quiet=True)
    inside = (
        np.isfinite(x)
        & np.isfinite(y)
        & (x > -0.5 - margin_px)
        & (x < nx - 0.5 + margin_px)
        & (y > -0.5 - margin_px)
        & (y < ny - 0.5 + margin_px)
    )
    return refs.subset(inside), x[inside], y[inside]


def pixel_scale_deg(wcs: WCS, shape: tuple[int, int]) -> float:
    """Geometric-mean pixel scale (deg/pixel) at the image centre."""
    ny, nx = shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra, dec = wcs.all_pix2world([cx, cx + 1, cx], [cy, cy, cy + 1], 0)
    step_x = angular_distance(ra[0], dec[0], ra[1], dec[1])
    step_y = angular_distance(ra[0], dec[0], ra[2], dec[2])
    return float(np.sqrt(step_x * step_y))
