"""The result of an astrometric solution and its residual statistics."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray

from pipeline.astrometry.sources import angular_distance, pixel_scale_deg

# Rayleigh distribution: the median of a 2-D offset is 1.1774 times its per-axis sigma.
RAYLEIGH_MEDIAN = float(np.sqrt(2 * np.log(2)))


@dataclass
class AstrometrySolution:
    """A WCS with the evidence for it.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        The celestial WCS of the image (knows its pixel shape).
    method : str
        How it was found, e.g. ``"builtin"``, ``"scamp"``,
        ``"solve-field + builtin"``, ``"nova + builtin"``.
    matches : astropy.table.Table
        One row per matched star: ``object_index``, ``catalog_index`` (rows of the
        inputs), ``x``, ``y``, ``ra``, ``dec``, ``mag`` (catalogue), ``dx``, ``dy``
        (catalogue minus detection, pixels), ``dra``, ``ddec`` (detection minus
        catalogue, arcsec, RA offset times cos Dec) and ``sep`` (arcsec).
    sip_order : int
        Order of the SIP polynomials (1 = plain TAN; SCAMP solutions: its degree).
    n_detections, n_reference : int
        Stars available on each side (unflagged detections; catalogue stars on the image).
    warnings : list of str
        Things the user should know (few matches, flagged objects used, ...).
    details : dict
        Method-specific plain numbers (alignment offsets, solver timings, ...).
    """

    wcs: WCS
    method: str
    matches: Table
    sip_order: int
    n_detections: int
    n_reference: int
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def n_matches(self) -> int:
        return len(self.matches)

    @property
    def rms_arcsec(self) -> float:
        """Root-mean-square distance between detections and their catalogue stars."""
        if len(self.matches) == 0:
            return float("nan")
        return float(np.sqrt(np.mean(np.asarray(self.matches["sep"]) ** 2)))

    @property
    def rms_px(self) -> float:
        if len(self.matches) == 0:
            return float("nan")
        dx, dy = np.asarray(self.matches["dx"]), np.asarray(self.matches["dy"])
        return float(np.sqrt(np.mean(dx**2 + dy**2)))

    @property
    def pixel_scale_arcsec(self) -> float:
        shape = (self.wcs.pixel_shape[1], self.wcs.pixel_shape[0]) if self.wcs.pixel_shape else None
        if shape is None:
            return float(np.sqrt(abs(np.linalg.det(self.wcs.pixel_scale_matrix))) * 3600)
        return pixel_scale_deg(self.wcs, shape) * 3600.0

    def fits_cards(self) -> dict[str, tuple[Any, str]]:
        """Header cards describing the fit, for ``write_wcs_file(..., extra=...)``."""
        rms = self.rms_arcsec
        return {
            "ASTRMETH": (self.method[:60], "how the astrometric solution was found"),
            "ASTRNMAT": (int(self.n_matches), "stars matched to the reference catalogue"),
            "ASTRRMS": (round(rms, 5) if np.isfinite(rms) else -1.0, "[arcsec] residual RMS"),
            "ASTRSIPO": (int(self.sip_order), "distortion order of the fit"),
        }

    def summary(self) -> dict[str, Any]:
        """Plain JSON-serialisable numbers for the step result."""
        ra, dec = (float(v) for v in self.wcs.wcs.crval)
        return {
            "astrometry_method": self.method,
            "n_matches": int(self.n_matches),
            "rms_arcsec": _rounded(self.rms_arcsec, 4),
            "rms_px": _rounded(self.rms_px, 4),
            "sip_order": int(self.sip_order),
            "pixel_scale_arcsec": _rounded(self.pixel_scale_arcsec, 6),
            "crval": [round(ra, 7), round(dec, 7)],
            "n_detections_used": int(self.n_detections),
            "n_catalog_in_field": int(self.n_reference),
            **{k: v for k, v in self.details.items() if _is_plain(v)},
        }


def _rounded(value: float, digits: int) -> float | None:
    return None if not np.isfinite(value) else float(f"{value:.{digits}g}")


def _is_plain(value: Any) -> bool:
    if isinstance(value, bool | int | float | str) or value is None:
        return not isinstance(value, float) or np.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    return False


def robust_sigma(distance: NDArray) -> float:
    """Per-axis scatter from 2-D offset lengths (median / 1.1774, robust to outliers)."""
    if len(distance) == 0:
        return float("nan")
    return float(np.median(distance) / RAYLEIGH_MEDIAN)


def residual_table(
    wcs: WCS,
    x: NDArray,
    y: NDArray,
    ra: NDArray,
    dec: NDArray,
    *,
    object_index: NDArray | None = None,
    catalog_index: NDArray | None = None,
    mag: NDArray | None = None,
) -> Table:
    """Residuals of matched stars under ``wcs``, in pixels and arcseconds."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        ra_det, dec_det = wcs.all_pix2world(x, y, 0)
        x_cat, y_cat = wcs.all_world2pix(ra, dec, 0, quiet=True) if len(ra) else (x, y)
    dra = ((ra_det - ra + 180.0) % 360.0 - 180.0) * np.cos(np.deg2rad(dec)) * 3600.0
    ddec = (dec_det - dec) * 3600.0
    n = len(x)
    return Table(
        {
            "object_index": np.asarray(object_index if object_index is not None else np.arange(n)),
            "catalog_index": np.asarray(
                catalog_index if catalog_index is not None else np.arange(n)
            ),
            "x": x,
            "y": y,
            "ra": ra,
            "dec": dec,
            "mag": np.asarray(mag if mag is not None else np.full(n, np.nan), float),
            "dx": np.asarray(x_cat, float) - x,
            "dy": np.asarray(y_cat, float) - y,
            "dra": dra,
            "ddec": ddec,
            "sep": angular_distance(ra_det, dec_det, ra, dec) * 3600.0,
        }
    )
