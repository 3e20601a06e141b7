"""What a calibration returns: the model, its figures, checks and warnings.

:class:`CalibrationResult` is what the photometry step stores (:meth:`~CalibrationResult.save`
writes JSON: coefficients, covariance, normalisation, colour names, statistics) and
what later steps reload (:meth:`~CalibrationResult.load`) to calibrate targets and
candidates. The table of matched pairs and the per-object colours are kept in memory
only (for plots and for :meth:`~CalibrationResult.apply` right after the fit).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from numpy.typing import ArrayLike, NDArray

from pipeline.calibration.diagnostics import ColorDiagnostics, CorrelationTest
from pipeline.calibration.model import PhotometricModel

FORMAT_NAME = "skysift-photometric-calibration"
FORMAT_VERSION = 1


@dataclass
class CalibrationResult:
    """A photometric calibration of one image.

    Attributes
    ----------
    model : PhotometricModel
        The fitted model (callable through :meth:`zero_point`, :meth:`magnitude`,
        :meth:`apply`).
    stats : dict
        Plain numbers: ``zp_center``, ``zp_center_err``, ``zp_median``, ``zp_min``,
        ``zp_max``, ``zp_rms`` (spread of the map), ``color_term``, ``color_term_err``,
        ``intrinsic_scatter``, ``scatter_uncapped``, ``error_scale``, ``chi2_dof``,
        ``rms`` (weighted residual RMS of the stars used), ``n_matched``,
        ``n_candidates``, ``n_used``, ``n_rejected``, ``order_requested``, ``order``,
        ``excluded`` (stars left out, by reason), ``match_radius`` and ``match_unit``.
    correlation : CorrelationTest or None
        The astrometry sanity check.
    diagnostics : ColorDiagnostics or None
        Colour-term diagnostics, when they ran.
    warnings : list of str
        Everything the user must know (fallbacks, suspect filter or astrometry).
    matches : astropy.table.Table or None
        Matched pairs with their residuals (not serialised).
    object_colors : numpy.ndarray or None
        Catalogue colour of each input object (NaN if unmatched); not serialised.
    """

    model: PhotometricModel
    stats: dict[str, Any]
    correlation: CorrelationTest | None = None
    diagnostics: ColorDiagnostics | None = None
    warnings: list[str] = field(default_factory=list)
    matches: Table | None = field(default=None, repr=False)
    object_colors: NDArray | None = field(default=None, repr=False)

    # --- the model as a callable ----------------------------------------------------
    def zero_point(self, x: ArrayLike, y: ArrayLike) -> NDArray:
        """ZP(x, y) at colour 0."""
        return self.model.zero_point(x, y)

    def zero_point_error(self, x: ArrayLike, y: ArrayLike) -> NDArray:
        """1σ error of ZP(x, y)."""
        return self.model.zero_point_error(x, y)

    def magnitude(
        self,
        mag_inst: ArrayLike,
        x: ArrayLike,
        y: ArrayLike,
        color: ArrayLike | None = None,
        mag_err: ArrayLike | None = None,
        color_err: ArrayLike | None = None,
    ) -> tuple[NDArray, NDArray]:
        """Calibrated magnitude and error (see :meth:`PhotometricModel.magnitude`)."""
        return self.model.magnitude(mag_inst, x, y, color, mag_err, color_err)

    def apply(
        self,
        table: Table,
        color: ArrayLike | str | None = None,
        mag_column: str = "mag",
        err_column: str = "magerr",
    ) -> Table:
        """Add ``mag_calib``/``mag_calib_err``/``mag_calib_color`` (see
        :meth:`PhotometricModel.apply`); pass ``color=result.object_colors`` for the
        objects table the calibration was fitted on."""
        return self.model.apply(table, color, mag_column, err_column)

    @property
    def color_term(self) -> float:
        return self.model.color_term

    @property
    def color_term_err(self) -> float | None:
        return self.model.color_term_err

    @property
    def intrinsic_scatter(self) -> float:
        return self.model.intrinsic_scatter

    @property
    def description(self) -> str:
        return self.model.description()

    # --- storage --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (plain numbers, strings and lists only)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "description": self.description,
            "model": self.model.to_dict(),
            "stats": _plain(self.stats),
            "correlation": self.correlation.to_dict() if self.correlation else None,
            "diagnostics": self.diagnostics.to_dict() if self.diagnostics else None,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationResult:
        """Rebuild a result written by :meth:`to_dict`.

        Raises
        ------
        ValueError
            If ``data`` is not a stored calibration of a version we read.
        """
        if data.get("format") != FORMAT_NAME:
            raise ValueError("not a SkySift photometric calibration (wrong 'format' field)")
        if int(data.get("version", 0)) > FORMAT_VERSION:
            raise ValueError(
                f"calibration file version {data.get('version')} is newer than this SkySift "
                f"reads ({FORMAT_VERSION}); re-run the calibration"
            )
        correlation = data.get("correlation")
        return cls(
            model=PhotometricModel.from_dict(data["model"]),
            stats=dict(data.get("stats") or {}),
            correlation=CorrelationTest(**correlation) if correlation else None,
            diagnostics=ColorDiagnostics.from_dict(data.get("diagnostics")),
            warnings=list(data.get("warnings") or []),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON file (atomically: a temporary file renamed into place)."""
        path = Path(path)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=1))
        temporary.replace(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CalibrationResult:
        """Read a file written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def summary(self) -> dict[str, Any]:
        """Short plain-number summary for a step result."""
        keys = (
            "zp_center",
            "zp_center_err",
            "zp_median",
            "zp_rms",
            "color_term",
            "color_term_err",
            "intrinsic_scatter",
            "error_scale",
            "rms",
            "n_matched",
            "n_used",
            "order",
        )
        out = {key: _plain(self.stats.get(key)) for key in keys}
        out["color_name"] = self.model.color_name
        out["band"] = self.model.band
        out["description"] = self.description
        out["correlation_p_value"] = self.correlation.p_value if self.correlation else None
        out["suggested_band"] = self.diagnostics.suggested_band if self.diagnostics else None
        return out


def _plain(value: Any) -> Any:
    """Numpy scalars/arrays to Python numbers and lists (NaN/inf to None), recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if np.isfinite(value) else None
    return value
