"""Shape prefilter: an IsolationForest that flags objects not shaped like stars.

Features (all dimensionless, see :data:`FEATURES`):

* ``fwhm_ratio``   log of the object's FWHM over the local image FWHM;
* ``radius_ratio`` log of the half-light radius over the local image FWHM;
* ``concentration`` aperture magnitude minus Kron (auto) magnitude;
* ``sharpness``    log of peak · FWHM² / auto flux (cosmic rays are sharp);
* ``ellipticity``  1 − b/a.

Stars follow smooth trends with magnitude (faint ones are noisier, bright ones
saturate) and position (the PSF changes over the field). Each feature is first
detrended with a robust polynomial in magnitude and position and divided by its
robust scatter at that magnitude, both learnt from unflagged objects; the forest
then sees roughly unit-variance residuals. Objects the forest isolates get flag
0x800. The fitted :class:`PrefilterModel` is pickled so the same judgement can
be applied to difference-image detections later (:func:`apply_prefilter`).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table
from pydantic import Field
from sklearn.ensemble import IsolationForest

from pipeline.flags import ObjectFlag
from pipeline.fwhm import FwhmMap
from pipeline.steps.base import StepConfig

FEATURES = ("fwhm_ratio", "radius_ratio", "concentration", "sharpness", "ellipticity")
REQUIRED_COLUMNS = ("x", "y", "mag", "fwhm", "flux_radius", "flux_auto", "peak", "a", "b")
MIN_TRAINING = 30  # fewer clean objects than this cannot define "normal"
MAG_BINS = 8
SCATTER_FLOOR = 1e-3
# Smallest scatter credited to each feature: bright stars are measured so precisely
# that small real PSF variations would otherwise count as many-sigma outliers.
FEATURE_FLOORS = np.array([0.03, 0.03, 0.02, 0.05, 0.03])
NAN_FILL = 0.0  # a feature that could not be measured is treated as typical
RESIDUAL_CAP = 50.0  # residuals in units of scatter are capped to keep the forest stable


class PrefilterConfig(StepConfig):
    """Parameters of the shape prefilter (part of the photometry step config)."""

    prefilter_detections: bool = Field(
        True, description="Flag objects whose shape is not stellar (IsolationForest, 0x800)."
    )
    prefilter_contamination: float | None = Field(
        None,
        gt=0,
        le=0.5,
        description="Expected outlier fraction; empty lets the forest decide (sklearn 'auto').",
    )


@dataclass
class PrefilterModel:
    """A trained prefilter: detrending, scaling and the forest, with what they need.

    Attributes
    ----------
    trend_coefficients : numpy.ndarray
        (n_features, n_terms) polynomial coefficients of the trends.
    scatter_mags, scatter_values : numpy.ndarray
        Robust scatter of each feature residual against magnitude (for
        interpolation), shapes (n_bins,) and (n_features, n_bins).
    mag_range : tuple of float
        Magnitudes are clipped to this range before the trend is evaluated.
    fwhm_map : FwhmMap
        The image FWHM map the ratios refer to.
    forest : sklearn.ensemble.IsolationForest
    n_training : int
    """

    trend_coefficients: np.ndarray
    scatter_mags: np.ndarray
    scatter_values: np.ndarray
    mag_range: tuple[float, float]
    fwhm_map: FwhmMap
    forest: IsolationForest
    n_training: int
    features: tuple[str, ...] = FEATURES


def feature_matrix(table: Table, fwhm_map: FwhmMap) -> np.ndarray:
    """Raw shape features (N, len(FEATURES)) of an objects table; NaN where undefined."""
    missing = [name for name in REQUIRED_COLUMNS if name not in table.colnames]
    if missing:
        raise ValueError(f"the objects table lacks the prefilter columns {missing}")
    x = np.asarray(table["x"], float)
    y = np.asarray(table["y"], float)
    local = fwhm_map(x, y) if len(x) else np.zeros(0)
    fwhm = np.asarray(table["fwhm"], float)
    flux_auto = np.asarray(table["flux_auto"], float)
    a = np.asarray(table["a"], float)
    b = np.asarray(table["b"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag_auto = np.where(flux_auto > 0, -2.5 * np.log10(flux_auto), np.nan)
        columns = [
            np.log(fwhm / local),
            np.log(np.asarray(table["flux_radius"], float) / local),
            np.asarray(table["mag"], float) - mag_auto,
            np.log(np.asarray(table["peak"], float) * local**2 / flux_auto),
            np.where(a > 0, 1.0 - b / a, np.nan),
        ]
    matrix = np.column_stack(columns) if len(x) else np.zeros((0, len(FEATURES)))
    matrix[~np.isfinite(matrix)] = np.nan
    return matrix


def _trend_design(mag: np.ndarray, x: np.ndarray, y: np.ndarray, shape, mag_range) -> np.ndarray:
    low, high = mag_range
    m = 2 * (np.clip(mag, low, high) - low) / max(high - low, 1e-6) - 1
    ny, nx = shape
    u = 2 * x / max(nx - 1, 1) - 1
    v = 2 * y / max(ny - 1, 1) - 1
    return np.column_stack([np.ones_like(m), m, m * m, m**3, u, v, u * u, v * v, u * v])


def _robust_fit(design: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least squares with 3σ clipping (MAD scale); NaN values left out."""
    keep = np.isfinite(values)
    coefficients = np.zeros(design.shape[1])
    for _ in range(5):
        if keep.sum() <= design.shape[1]:
            break
        coefficients = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        residual = values - design @ coefficients
        scatter = 1.4826 * np.nanmedian(np.abs(residual[keep])) + SCATTER_FLOOR
        new_keep = np.isfinite(values) & (np.abs(residual) < 3 * scatter)
        if (new_keep == keep).all():
            break
        keep = new_keep
    return coefficients


def _standardise(model: PrefilterModel, raw: np.ndarray, table: Table) -> np.ndarray:
    mag = np.asarray(table["mag"], float)
    mag = np.where(np.isfinite(mag), mag, model.mag_range[1])
    design = _trend_design(
        mag,
        np.asarray(table["x"], float),
        np.asarray(table["y"], float),
        model.fwhm_map.shape,
        model.mag_range,
    )
    residual = raw - design @ model.trend_coefficients.T
    clipped = np.clip(mag, model.scatter_mags[0], model.scatter_mags[-1])
    scale = np.column_stack(
        [np.interp(clipped, model.scatter_mags, row) for row in model.scatter_values]
    )
    scaled = np.clip(residual / scale, -RESIDUAL_CAP, RESIDUAL_CAP)
    scaled[~np.isfinite(scaled)] = NAN_FILL
    return scaled


def train_prefilter(
    table: Table,
    fwhm_map: FwhmMap,
    contamination: float | None = None,
    seed: int = 0,
) -> PrefilterModel:
    """Learn the stellar locus from the unflagged objects of ``table``.

    Raises
    ------
    ValueError
        If fewer than :data:`MIN_TRAINING` unflagged objects have all features.
    """
    raw = feature_matrix(table, fwhm_map)
    mag = np.asarray(table["mag"], float)
    clean = (np.asarray(table["flags"]) == 0) & np.isfinite(mag) & np.isfinite(raw).all(axis=1)
    if clean.sum() < MIN_TRAINING:
        raise ValueError(
            f"only {int(clean.sum())} unflagged objects: too few to train the shape prefilter "
            f"(needs {MIN_TRAINING})"
        )
    mag_range = (float(np.percentile(mag[clean], 1)), float(np.percentile(mag[clean], 99)))
    design = _trend_design(
        mag[clean],
        np.asarray(table["x"], float)[clean],
        np.asarray(table["y"], float)[clean],
        fwhm_map.shape,
        mag_range,
    )
    coefficients = np.array([_robust_fit(design, raw[clean, i]) for i in range(raw.shape[1])])
    residual = raw[clean] - design @ coefficients.T
    # Robust scatter in magnitude bins with equal numbers of objects.
    order = np.argsort(mag[clean])
    bins = np.array_split(order, min(MAG_BINS, max(1, clean.sum() // 15)))
    scatter_mags = np.array([np.median(mag[clean][b]) for b in bins])
    scatter_values = np.array(
        [
            [1.4826 * np.median(np.abs(residual[b, i] - np.median(residual[b, i]))) for b in bins]
            for i in range(raw.shape[1])
        ]
    )
    scatter_values = np.maximum(scatter_values, FEATURE_FLOORS[:, None])
    model = PrefilterModel(
        trend_coefficients=coefficients,
        scatter_mags=scatter_mags,
        scatter_values=scatter_values,
        mag_range=mag_range,
        fwhm_map=fwhm_map,
        forest=IsolationForest(
            n_estimators=200,
            contamination="auto" if contamination is None else contamination,
            random_state=seed,
        ),
        n_training=int(clean.sum()),
    )
    model.forest.fit(_standardise(model, raw[clean], table[clean]))
    return model


def apply_prefilter(model: PrefilterModel, table: Table) -> np.ndarray:
    """Boolean array: True for objects of ``table`` the trained model calls outliers."""
    if len(table) == 0:
        return np.zeros(0, bool)
    scaled = _standardise(model, feature_matrix(table, model.fwhm_map), table)
    return model.forest.predict(scaled) < 0


def standardised_features(model: PrefilterModel, table: Table) -> np.ndarray:
    """The detrended, scaled features the forest sees (for plots)."""
    return _standardise(model, feature_matrix(table, model.fwhm_map), table)


def flag_outliers(table: Table, model: PrefilterModel) -> int:
    """Set ``SHAPE_OUTLIER`` on the outliers of ``table`` in place; return how many."""
    outliers = apply_prefilter(model, table)
    table["flags"] = np.asarray(table["flags"], np.int32) | np.where(
        outliers, np.int32(ObjectFlag.SHAPE_OUTLIER), np.int32(0)
    )
    return int(outliers.sum())


def save_prefilter(model: PrefilterModel, path: str | Path) -> None:
    """Pickle the model (the forest, scaling and FWHM map) to ``path``."""
    with open(path, "wb") as stream:
        pickle.dump(model, stream, protocol=pickle.HIGHEST_PROTOCOL)


def load_prefilter(path: str | Path) -> PrefilterModel:
    """Load a model written by :func:`save_prefilter` (trusted task files only)."""
    with open(path, "rb") as stream:
        model = pickle.load(stream)
    if not isinstance(model, PrefilterModel):
        raise ValueError(f"{path} does not hold a prefilter model")
    return model
