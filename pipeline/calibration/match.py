"""Pairing measured objects with reference-catalogue stars for the calibration.

Two ways, chosen by what is known:

* with a WCS, catalogue positions are projected to pixels (SIP included) and pairs
  are found in pixel space, within a radius in pixels (0.5·FWHM by default);
* without one, the objects' own ``ra``/``dec`` are matched on the sphere (unit
  vectors in a KD-tree), the radius converted with the pixel scale.

Every pair within the radius is kept, as the reference system does; pairs that are
not one-to-one (an object near two catalogue stars, a star near two objects) are
marked ``ambiguous`` so the fit can leave them out instead of meeting them as
outliers. :func:`crowded_catalog_stars` finds catalogue stars with a bright enough
neighbour nearby (probable blends in the image).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from pipeline.catalogs.definitions import GENERIC_POSITIONS

ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0


class MatchError(ValueError):
    """The inputs cannot be matched; the message says what to provide."""


@dataclass
class CatalogMatch:
    """All object–catalogue pairs closer than the match radius.

    Attributes
    ----------
    object_index, catalog_index : numpy.ndarray
        Row indices into the objects table and the catalogue, one entry per pair.
    distance : numpy.ndarray
        Separation of each pair, in ``unit``.
    dx, dy : numpy.ndarray
        Object minus catalogue position: pixels (x, y) with a WCS, arcsec
        (RA·cos Dec, Dec) without.
    unit : str
        ``"pix"`` or ``"arcsec"``.
    radius : float
        The match radius, in ``unit``.
    catalog_x, catalog_y : numpy.ndarray
        Pixel positions of every catalogue row (NaN where unknown: no WCS, or off the
        projection).
    """

    object_index: NDArray
    catalog_index: NDArray
    distance: NDArray
    dx: NDArray
    dy: NDArray
    unit: str
    radius: float
    catalog_x: NDArray
    catalog_y: NDArray

    def __len__(self) -> int:
        return int(self.object_index.size)

    @property
    def ambiguous(self) -> NDArray:
        """True for pairs whose object or catalogue star takes part in another pair."""
        obj_count = np.bincount(self.object_index, minlength=1)
        cat_count = np.bincount(self.catalog_index, minlength=1)
        return (obj_count[self.object_index] > 1) | (cat_count[self.catalog_index] > 1)

    def subset(self, keep: NDArray) -> CatalogMatch:
        """The pairs selected by a boolean or index array."""
        return CatalogMatch(
            self.object_index[keep],
            self.catalog_index[keep],
            self.distance[keep],
            self.dx[keep],
            self.dy[keep],
            self.unit,
            self.radius,
            self.catalog_x,
            self.catalog_y,
        )


def catalog_positions(catalog: Table) -> tuple[NDArray, NDArray]:
    """RA, Dec (degrees) of a catalogue table, from the first known pair of columns.

    Raises
    ------
    MatchError
        When no (RA, Dec) column pair is present.
    """
    for ra_name, dec_name in GENERIC_POSITIONS:
        if ra_name in catalog.colnames and dec_name in catalog.colnames:
            return _as_float(catalog[ra_name]), _as_float(catalog[dec_name])
    pairs = ", ".join(f"{a}/{b}" for a, b in GENERIC_POSITIONS)
    raise MatchError(f"the catalogue has no position columns: expected one of {pairs}")


def _as_float(column) -> NDArray:
    """A table column as float with masked entries as NaN."""
    data = np.ma.getdata(column).astype(float)
    mask = np.ma.getmaskarray(column)
    return np.where(mask, np.nan, data)


def project_catalog(catalog: Table, wcs: WCS) -> tuple[NDArray, NDArray]:
    """0-based pixel positions of every catalogue row through ``wcs`` (NaN on failure)."""
    ra, dec = catalog_positions(catalog)
    x = np.full(len(catalog), np.nan)
    y = np.full(len(catalog), np.nan)
    good = np.isfinite(ra) & np.isfinite(dec)
    if not good.any():
        return x, y
    celestial = wcs.celestial if wcs.has_celestial else wcs
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            px, py = celestial.all_world2pix(ra[good], dec[good], 0, quiet=True)
        except Exception:  # a distortion that does not invert: fall back to the linear part
            px, py = celestial.wcs_world2pix(ra[good], dec[good], 0)
    x[good], y[good] = px, py
    return x, y


def _unit_vectors(ra: NDArray, dec: NDArray) -> NDArray:
    r, d = np.deg2rad(ra), np.deg2rad(dec)
    return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])


def _pairs(points_a: NDArray, points_b: NDArray, radius: float) -> tuple[NDArray, NDArray]:
    """Index pairs (a, b) of points closer than ``radius`` (rows with NaN never pair)."""
    good_a = np.flatnonzero(np.isfinite(points_a).all(axis=1))
    good_b = np.flatnonzero(np.isfinite(points_b).all(axis=1))
    if good_a.size == 0 or good_b.size == 0:
        return np.zeros(0, int), np.zeros(0, int)
    tree_a, tree_b = cKDTree(points_a[good_a]), cKDTree(points_b[good_b])
    found = tree_a.sparse_distance_matrix(tree_b, radius, output_type="ndarray")
    order = np.lexsort((found["j"], found["i"]))
    return good_a[found["i"][order]], good_b[found["j"][order]]


def match_catalog(
    objects: Table,
    catalog: Table,
    radius_pix: float,
    *,
    wcs: WCS | None = None,
    pixel_scale_arcsec: float | None = None,
) -> CatalogMatch:
    """Every object–catalogue pair closer than ``radius_pix``.

    Parameters
    ----------
    objects : astropy.table.Table
        Measured objects with ``x``, ``y`` (0-based) and, for a match on the sky,
        ``ra``, ``dec`` in degrees.
    catalog : astropy.table.Table
        Reference catalogue with RA/Dec columns (``RAJ2000``/``DEJ2000``, ``ra``/``dec`` ...).
    radius_pix : float
        Match radius in pixels (typically 0.5·FWHM).
    wcs : astropy.wcs.WCS, optional
        Celestial WCS of the image; given, the match is done in pixels.
    pixel_scale_arcsec : float, optional
        Needed without a WCS, to turn the radius into arcseconds.

    Returns
    -------
    CatalogMatch

    Raises
    ------
    MatchError
        If positions are missing or the radius is not positive.
    """
    if not (np.isfinite(radius_pix) and radius_pix > 0):
        raise MatchError(f"the match radius must be a positive number of pixels, not {radius_pix}")
    for name in ("x", "y"):
        if name not in objects.colnames:
            raise MatchError(f"the objects table has no {name!r} column (0-based pixel position)")
    if wcs is not None:
        cat_x, cat_y = project_catalog(catalog, wcs)
        obj_xy = np.column_stack([_as_float(objects["x"]), _as_float(objects["y"])])
        obj_i, cat_i = _pairs(obj_xy, np.column_stack([cat_x, cat_y]), radius_pix)
        dx = obj_xy[obj_i, 0] - cat_x[cat_i]
        dy = obj_xy[obj_i, 1] - cat_y[cat_i]
        return CatalogMatch(
            obj_i, cat_i, np.hypot(dx, dy), dx, dy, "pix", float(radius_pix), cat_x, cat_y
        )
    return _match_on_sky(objects, catalog, radius_pix, pixel_scale_arcsec)


def _match_on_sky(
    objects: Table, catalog: Table, radius_pix: float, pixel_scale_arcsec: float | None
) -> CatalogMatch:
    if pixel_scale_arcsec is None or not pixel_scale_arcsec > 0:
        raise MatchError(
            "without a WCS the match is done on the objects' ra/dec and needs the pixel "
            "scale (pixel_scale_arcsec) to turn the radius into arcseconds"
        )
    if "ra" not in objects.colnames or "dec" not in objects.colnames:
        raise MatchError("the objects table has no ra/dec columns and no WCS was given")
    obj_ra, obj_dec = _as_float(objects["ra"]), _as_float(objects["dec"])
    if not (np.isfinite(obj_ra) & np.isfinite(obj_dec)).any():
        raise MatchError(
            "no object has sky coordinates (ra/dec are NaN): solve the astrometry first or "
            "give the WCS"
        )
    cat_ra, cat_dec = catalog_positions(catalog)
    radius_arcsec = radius_pix * pixel_scale_arcsec
    chord = 2.0 * np.sin(radius_arcsec / ARCSEC_PER_RAD / 2.0)
    obj_i, cat_i = _pairs(_unit_vectors(obj_ra, obj_dec), _unit_vectors(cat_ra, cat_dec), chord)
    cos_dec = np.cos(np.deg2rad(cat_dec[cat_i]))
    d_ra = (obj_ra[obj_i] - cat_ra[cat_i] + 180.0) % 360.0 - 180.0
    dx = d_ra * cos_dec * 3600.0
    dy = (obj_dec[obj_i] - cat_dec[cat_i]) * 3600.0
    nan = np.full(len(catalog), np.nan)
    return CatalogMatch(
        obj_i, cat_i, np.hypot(dx, dy), dx, dy, "arcsec", float(radius_arcsec), nan, nan.copy()
    )


def crowded_catalog_stars(
    catalog: Table,
    mag: NDArray,
    radius: float,
    dmag: float,
    *,
    xy: tuple[NDArray, NDArray] | None = None,
) -> NDArray:
    """Catalogue stars with a neighbour closer than ``radius`` that is not much fainter.

    Parameters
    ----------
    catalog : astropy.table.Table
        The catalogue (its RA/Dec are used when ``xy`` is not given).
    mag : numpy.ndarray
        Catalogue magnitudes (NaN counts as a neighbour of any brightness).
    radius : float
        Neighbour distance: pixels with ``xy``, arcseconds on the sky without.
    dmag : float
        A neighbour fainter than the star by more than this is ignored.
    xy : (numpy.ndarray, numpy.ndarray), optional
        Pixel positions of the catalogue rows.

    Returns
    -------
    numpy.ndarray of bool
        True for crowded stars.
    """
    n = len(catalog)
    crowded = np.zeros(n, bool)
    if n < 2 or radius <= 0:
        return crowded
    if xy is not None:
        points = np.column_stack(xy)
        reach = radius
    else:
        points = _unit_vectors(*catalog_positions(catalog))
        reach = 2.0 * np.sin(radius / ARCSEC_PER_RAD / 2.0)
    good = np.flatnonzero(np.isfinite(points).all(axis=1))
    pairs = cKDTree(points[good]).query_pairs(reach, output_type="ndarray")
    if pairs.size == 0:
        return crowded
    a, b = good[pairs[:, 0]], good[pairs[:, 1]]
    m = np.where(np.isfinite(mag), mag, -np.inf)  # unknown brightness: assume it matters
    crowded[a[~(m[b] > m[a] + dmag)]] = True
    crowded[b[~(m[a] > m[b] + dmag)]] = True
    return crowded
