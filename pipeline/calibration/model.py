"""The photometric model m_cat = m_inst + ZP(x, y) + C·colour as plain, serialisable numbers.

``ZP(x, y)`` is a polynomial of total degree ``order`` in normalised pixel coordinates
``u = (x - (nx-1)/2) / (nx/2)``, ``v = (y - (ny-1)/2) / (ny/2)`` (the image spans
[-1, 1] on both axes, which keeps the normal equations well conditioned). The model
is stored as coefficients, their covariance and names (:meth:`PhotometricModel.to_dict`),
never as a pickled function, so any later step can rebuild it with
:meth:`PhotometricModel.from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import Table
from numpy.typing import ArrayLike, NDArray

from pipeline.calibration.columns import describe_calibration, system_text

MAG_CALIB_COLUMN = "mag_calib"
MAG_CALIB_ERR_COLUMN = "mag_calib_err"
MAG_CALIB_COLOR_COLUMN = "mag_calib_color"  # colour each calibrated magnitude assumes


# FITS headers take ASCII only: the characters our descriptions use, spelled out
_ASCII = str.maketrans({"±": "+/-", "−": "-", "·": "*", "—": "-", "–": "-"})


def ascii_text(text: str) -> str:
    """``text`` with our few non-ASCII symbols spelled in ASCII (for FITS headers)."""
    return text.translate(_ASCII).encode("ascii", "replace").decode("ascii")


def polynomial_terms(order: int) -> list[tuple[int, int]]:
    """Exponents (i, j) of the monomials u^i v^j with i + j <= order, low degrees first."""
    return [(degree - j, j) for degree in range(order + 1) for j in range(degree + 1)]


def n_parameters(order: int, color: bool) -> int:
    """Free parameters of a model: polynomial terms plus the colour term if fitted."""
    return len(polynomial_terms(order)) + int(color)


@dataclass(frozen=True)
class PixelFrame:
    """Maps 0-based pixel positions of an ``nx`` × ``ny`` image onto [-1, 1]²."""

    nx: int
    ny: int

    def normalise(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray, NDArray]:
        u = (np.asarray(x, float) - (self.nx - 1) / 2.0) / (self.nx / 2.0)
        v = (np.asarray(y, float) - (self.ny - 1) / 2.0) / (self.ny / 2.0)
        return u, v

    @property
    def center(self) -> tuple[float, float]:
        return (self.nx - 1) / 2.0, (self.ny - 1) / 2.0

    def grid(self, step: float) -> tuple[NDArray, NDArray]:
        """Pixel-centre coordinates of a grid with nodes ``step`` pixels apart."""
        xs = np.arange(step / 2.0 - 0.5, self.nx, step)
        ys = np.arange(step / 2.0 - 0.5, self.ny, step)
        return np.meshgrid(xs, ys)


def design_matrix(
    frame: PixelFrame, x: ArrayLike, y: ArrayLike, order: int, color: ArrayLike | None = None
) -> NDArray:
    """Columns of the linear model: the monomials of (u, v), then the colour if given."""
    u, v = frame.normalise(x, y)
    u, v = np.atleast_1d(u), np.atleast_1d(v)
    columns = [u**i * v**j for i, j in polynomial_terms(order)]
    if color is not None:
        columns.append(np.broadcast_to(np.asarray(color, float), u.shape))
    return np.column_stack(columns) if columns else np.zeros((u.size, 0))


@dataclass
class PhotometricModel:
    """A fitted calibration: evaluate it anywhere, apply it to any table.

    Attributes
    ----------
    frame : PixelFrame
        Image size defining the coordinate normalisation.
    order : int
        Polynomial order of ZP(x, y).
    coefficients : numpy.ndarray
        ZP polynomial coefficients, in the order of :func:`polynomial_terms`.
    covariance : numpy.ndarray
        Covariance of the fitted parameters: the polynomial coefficients, then the
        colour term when it was fitted.
    color_term : float
        C (0.0 without a colour term).
    color_fitted : bool
        True if C was fitted (its variance is the last diagonal element).
    color_name : str or None
        ``"g-r"``; None when the model has no colour term.
    color_columns : (str, str) or None
        Catalogue columns of the colour.
    default_color : float
        Colour assumed for objects whose colour is unknown.
    default_color_rule : str
        How ``default_color`` was chosen, in words.
    intrinsic_scatter : float
        Fitted extra scatter (mag), added in quadrature to every calibrated error.
    error_scale : float
        Factor (≥ 1) the measurement errors were found to be underestimated by.
    band, catalog_title, mag_column, err_column : str or None
        What the calibrated magnitudes are.
    """

    frame: PixelFrame
    order: int
    coefficients: NDArray
    covariance: NDArray
    color_term: float = 0.0
    color_fitted: bool = False
    color_name: str | None = None
    color_columns: tuple[str, str] | None = None
    default_color: float = 0.0
    default_color_rule: str = "no colour term"
    intrinsic_scatter: float = 0.0
    error_scale: float = 1.0
    band: str = ""
    catalog_title: str | None = None
    mag_column: str | None = None
    err_column: str | None = None

    # --- evaluation ---------------------------------------------------------------
    @property
    def n_poly(self) -> int:
        return len(polynomial_terms(self.order))

    @property
    def color_term_err(self) -> float | None:
        """1σ error of C, None when C was fixed or absent."""
        if not self.color_fitted:
            return None
        return float(np.sqrt(max(self.covariance[-1, -1], 0.0)))

    def zero_point(self, x: ArrayLike, y: ArrayLike) -> NDArray:
        """ZP(x, y) for colour 0 (0-based pixels; scalars or arrays)."""
        shape = np.broadcast(np.asarray(x), np.asarray(y)).shape
        x_b, y_b = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        design = design_matrix(self.frame, x_b.ravel(), y_b.ravel(), self.order)
        return (design @ self.coefficients).reshape(shape)

    def _parameter_error(self, x: NDArray, y: NDArray, color: NDArray) -> NDArray:
        """Model error at each position and colour, from the parameter covariance."""
        design = design_matrix(self.frame, x, y, self.order, color if self.color_fitted else None)
        variance = np.einsum("ij,jk,ik->i", design, self.covariance, design)
        return np.sqrt(np.clip(variance, 0.0, None))

    def zero_point_error(self, x: ArrayLike, y: ArrayLike) -> NDArray:
        """1σ error of ZP(x, y) from the fit (the colour-term error left out)."""
        shape = np.broadcast(np.asarray(x), np.asarray(y)).shape
        x_b, y_b = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        design = design_matrix(self.frame, x_b.ravel(), y_b.ravel(), self.order)
        block = self.covariance[: self.n_poly, : self.n_poly]
        variance = np.einsum("ij,jk,ik->i", design, block, design)
        return np.sqrt(np.clip(variance, 0.0, None)).reshape(shape)

    def resolve_color(self, color: ArrayLike | None, n: int) -> NDArray:
        """Per-object colour: the given values, with :attr:`default_color` for None/NaN."""
        if color is None:
            return np.full(n, self.default_color)
        values = np.broadcast_to(np.asarray(color, float), (n,)).copy()
        values[~np.isfinite(values)] = self.default_color
        return values

    def magnitude(
        self,
        mag_inst: ArrayLike,
        x: ArrayLike,
        y: ArrayLike,
        color: ArrayLike | None = None,
        mag_err: ArrayLike | None = None,
        color_err: ArrayLike | None = None,
    ) -> tuple[NDArray, NDArray]:
        """Calibrated magnitudes and their errors.

        ``mag = mag_inst + ZP(x, y) + C·colour``; ``colour`` None or NaN means
        unknown and takes :attr:`default_color` (see :attr:`default_color_rule`).
        ``err² = (error_scale·mag_err)² + model error² + intrinsic_scatter²
        (+ (C·color_err)²)``; without ``mag_err`` only the calibration part is given.
        """
        mag_inst = np.atleast_1d(np.asarray(mag_inst, float))
        n = mag_inst.size
        x_b = np.broadcast_to(np.asarray(x, float), (n,))
        y_b = np.broadcast_to(np.asarray(y, float), (n,))
        colors = self.resolve_color(color, n)
        mag = mag_inst + self.zero_point(x_b, y_b) + self.color_term * colors
        variance = self._parameter_error(x_b, y_b, colors) ** 2 + self.intrinsic_scatter**2
        if mag_err is not None:
            variance = variance + (self.error_scale * np.asarray(mag_err, float)) ** 2
        if color_err is not None:
            known = np.nan_to_num(np.asarray(color_err, float), nan=0.0)
            variance = variance + (self.color_term * known) ** 2
        return mag, np.sqrt(variance)

    def apply(
        self,
        table: Table,
        color: ArrayLike | str | None = None,
        mag_column: str = "mag",
        err_column: str = "magerr",
    ) -> Table:
        """Add ``mag_calib``, ``mag_calib_err`` and ``mag_calib_color`` to ``table`` in place.

        Parameters
        ----------
        table : astropy.table.Table
            Needs ``x``, ``y`` and the instrumental magnitude (and error) columns.
        color : array-like or str, optional
            Per-row colours, or the name of a column holding them; NaN or None means
            unknown (:attr:`default_color` is used and recorded per row).
        mag_column, err_column : str
            Instrumental magnitude and error columns.

        Returns
        -------
        astropy.table.Table
            The same table, also carrying the system and colour in ``table.meta``.
        """
        for name in ("x", "y", mag_column):
            if name not in table.colnames:
                raise ValueError(f"cannot calibrate: the table has no {name!r} column")
        if isinstance(color, str):
            color = np.asarray(table[color], float)
        n = len(table)
        colors = self.resolve_color(color, n)
        mag_err = np.asarray(table[err_column], float) if err_column in table.colnames else None
        mag, err = self.magnitude(
            np.asarray(table[mag_column], float), table["x"], table["y"], colors, mag_err
        )
        table[MAG_CALIB_COLUMN] = mag
        table[MAG_CALIB_ERR_COLUMN] = err
        table[MAG_CALIB_COLOR_COLUMN] = colors
        table.meta.update(self.metadata())
        return table

    # --- words and numbers --------------------------------------------------------
    def system_description(self) -> str:
        """``"r (Pan-STARRS DR1, AB) with g-r colour term C = 0.102 ± 0.004"``."""
        return describe_calibration(
            self.band,
            self.catalog_title,
            self.color_name,
            self.color_term if self.color_name else None,
            self.color_term_err,
            self.color_fitted,
        )

    def description(self) -> str:
        """:meth:`system_description` plus the colour assumed for objects without one."""
        text = self.system_description()
        if self.color_name and self.color_term != 0.0:
            text += (
                f"; objects without a catalogue colour are calibrated for "
                f"{self.color_name} = {self.default_color:.3f} ({self.default_color_rule})"
            )
        return text

    def metadata(self) -> dict[str, Any]:
        """Short FITS keys (ASCII values) describing calibrated magnitudes, for ``table.meta``."""
        system, zero = system_text(self.band, self.catalog_title)
        return {
            "MAGBAND": self.band,
            "MAGCAT": system,
            "MAGSYS": zero or "",
            "MAGCOLOR": self.color_name or "",
            "COLTERM": float(self.color_term),
            "COLDEF": float(self.default_color),
            "MAGDESC": ascii_text(self.description()),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers and names; :meth:`from_dict` inverts it."""
        return {
            "frame": {"nx": self.frame.nx, "ny": self.frame.ny},
            "normalisation": {
                "u": f"(x - {(self.frame.nx - 1) / 2}) / {self.frame.nx / 2}",
                "v": f"(y - {(self.frame.ny - 1) / 2}) / {self.frame.ny / 2}",
            },
            "order": self.order,
            "terms": [list(t) for t in polynomial_terms(self.order)],
            "coefficients": [float(c) for c in self.coefficients],
            "covariance": [[float(c) for c in row] for row in self.covariance],
            "color_term": float(self.color_term),
            "color_fitted": bool(self.color_fitted),
            "color_name": self.color_name,
            "color_columns": list(self.color_columns) if self.color_columns else None,
            "default_color": float(self.default_color),
            "default_color_rule": self.default_color_rule,
            "intrinsic_scatter": float(self.intrinsic_scatter),
            "error_scale": float(self.error_scale),
            "band": self.band,
            "catalog_title": self.catalog_title,
            "mag_column": self.mag_column,
            "err_column": self.err_column,
            "description": self.description(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhotometricModel:
        """Rebuild a model written by :meth:`to_dict`.

        Raises
        ------
        ValueError
            If numbers are missing or inconsistent (e.g. a hand-edited file).
        """
        try:
            order = int(data["order"])
            coefficients = np.asarray(data["coefficients"], float)
            covariance = np.asarray(data["covariance"], float)
            frame = PixelFrame(int(data["frame"]["nx"]), int(data["frame"]["ny"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a stored photometric model: missing {exc}") from exc
        fitted = bool(data.get("color_fitted", False))
        n_expected = n_parameters(order, fitted)
        if coefficients.size != len(polynomial_terms(order)) or covariance.shape != (
            n_expected,
            n_expected,
        ):
            raise ValueError(
                f"stored photometric model is inconsistent: order {order} needs "
                f"{len(polynomial_terms(order))} coefficients and a {n_expected}×{n_expected} "
                "covariance; re-run the calibration"
            )
        columns = data.get("color_columns")
        return cls(
            frame=frame,
            order=order,
            coefficients=coefficients,
            covariance=covariance,
            color_term=float(data.get("color_term", 0.0)),
            color_fitted=fitted,
            color_name=data.get("color_name"),
            color_columns=tuple(columns) if columns else None,
            default_color=float(data.get("default_color", 0.0)),
            default_color_rule=data.get("default_color_rule", ""),
            intrinsic_scatter=float(data.get("intrinsic_scatter", 0.0)),
            error_scale=float(data.get("error_scale", 1.0)),
            band=data.get("band", ""),
            catalog_title=data.get("catalog_title"),
            mag_column=data.get("mag_column"),
            err_column=data.get("err_column"),
        )
