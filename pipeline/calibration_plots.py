"""Diagnostic plots of the photometric calibration and the detection limit (PNG, Agg).

After the reference paper's Figures 4 and 5:

* :func:`plot_calibration_residuals` — residuals of the calibration stars against
  catalogue magnitude and against colour;
* :func:`plot_calibration_maps` — the measured m_cat − m_inst − C·colour at the
  stars, the fitted ZP(x, y) model, the residual map and the astrometric
  displacement of the matched stars;
* :func:`plot_color_diagnostics` — the colour term found with every band;
* :func:`plot_detection_limit` — S/N against calibrated magnitude with the noise
  model, the limits and the per-object (background-only) limits;
* :func:`plot_limit_histogram` — magnitudes of detected objects against those of
  the catalogue stars on the image.

Figures are built with :class:`matplotlib.figure.Figure`, never pyplot, so worker
threads share no plotting state.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from astropy.table import Table
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray
from scipy.stats import binned_statistic, binned_statistic_2d

from pipeline.calibration import CalibrationResult, ColorDiagnostics
from pipeline.limits import DetectionLimits, calibrated_magnitudes, local_limits

DPI = 100
RESIDUAL_RANGE = 0.5  # mag; residual axes are clipped here (outliers drawn at the edge)
MAP_BINS = 16  # cells a side of the binned residual and displacement maps
MODEL_GRID = 64  # nodes a side of the ZP model image
PRECISE_STAR_ERROR = 0.03  # mag; the measured-ZP map shows stars at least this precise
MIN_PRECISE_STARS = 20

# How each kind of pair is drawn: (label, colour, marker size)
_PAIR_STYLES = {
    "used": ("used in the fit", "tab:blue", 6),
    "outlier": ("rejected outliers", "tab:red", 10),
    "excluded": ("flagged / crowded / ambiguous", "0.7", 4),
}


def _save(figure: Figure, path: str | Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI)


def _require_matches(result: CalibrationResult) -> Table:
    if result.matches is None:
        raise ValueError(
            "this calibration has no table of matched stars (it was reloaded from JSON): "
            "plot right after calibrate_photometry"
        )
    return result.matches


def _pair_kinds(matches: Table) -> dict[str, NDArray]:
    used = np.asarray(matches["used"], bool)
    excluded = np.asarray(matches["excluded"]).astype(str)
    return {
        "used": used,
        "outlier": excluded == "outlier",
        "excluded": ~used & (excluded != "outlier") & (excluded != "no magnitude"),
    }


def _binned_median(axes, x: NDArray, y: NDArray, bins: int = 12) -> None:
    good = np.isfinite(x) & np.isfinite(y)
    if good.sum() < 2 * bins:
        return
    edges = np.quantile(x[good], np.linspace(0, 1, bins + 1))
    edges = np.unique(edges)
    if edges.size < 3:
        return
    median, _, _ = binned_statistic(x[good], y[good], "median", bins=edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    axes.plot(centres, median, "-", color="k", lw=1.2, label="binned median")


def _residual_panel(axes, x: NDArray, matches: Table, kinds: dict, xlabel: str) -> None:
    residual = np.clip(np.asarray(matches["residual"], float), -RESIDUAL_RANGE, RESIDUAL_RANGE)
    error = np.asarray(matches["error"], float)
    for kind in ("excluded", "outlier", "used"):
        member = kinds[kind] & np.isfinite(x) & np.isfinite(residual)
        if not member.any():
            continue
        label, colour, size = _PAIR_STYLES[kind]
        if kind == "used":
            axes.errorbar(
                x[member],
                residual[member],
                yerr=error[member],
                fmt="none",
                ecolor=colour,
                alpha=0.15,
                lw=0.5,
            )
        axes.scatter(
            x[member], residual[member], s=size, c=colour, label=f"{label} ({member.sum()})"
        )
    _binned_median(axes, x[kinds["used"]], residual[kinds["used"]])
    axes.axhline(0.0, color="k", lw=0.5, ls=":")
    axes.set_ylim(-RESIDUAL_RANGE * 1.05, RESIDUAL_RANGE * 1.05)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("catalogue − calibrated, mag")


def plot_calibration_residuals(result: CalibrationResult, path: str | Path) -> None:
    """Residuals of the matched stars against catalogue magnitude and against colour."""
    matches = _require_matches(result)
    kinds = _pair_kinds(matches)
    model = result.model
    color = np.asarray(matches["color"], float)
    has_color = np.isfinite(color).any()
    figure = Figure(figsize=(12.0 if has_color else 6.5, 4.8))
    axes = figure.add_subplot(1, 2 if has_color else 1, 1)
    band = model.band or "catalogue"
    _residual_panel(axes, np.asarray(matches["mag_cat"], float), matches, kinds, f"{band} mag")
    axes.legend(loc="lower left", fontsize="small", markerscale=2)
    if has_color:
        name = model.color_name or _color_label(result)
        color_axes = figure.add_subplot(1, 2, 2)
        _residual_panel(color_axes, color, matches, kinds, f"{name} colour, mag")
    stats = result.stats
    figure.suptitle(
        f"{model.system_description()}\nZP {stats['zp_center']:.3f} ± "
        f"{stats['zp_center_err']:.3f} (centre), intrinsic scatter "
        f"{model.intrinsic_scatter:.3f}, {stats['n_used']} of {stats['n_matched']} "
        f"matched stars used",
        fontsize=10,
    )
    figure.tight_layout()
    _save(figure, path)


def _color_label(result: CalibrationResult) -> str:
    columns = result.model.color_columns
    return f"{columns[0]} − {columns[1]}" if columns else "catalogue"


def _star_map(axes, figure, x, y, values, label, cmap, limits=None):
    good = np.isfinite(values)
    vmin, vmax = limits if limits else np.nanpercentile(values[good], [2, 98])
    shown = axes.scatter(x[good], y[good], c=values[good], s=8, cmap=cmap, vmin=vmin, vmax=vmax)
    figure.colorbar(shown, ax=axes, label=label)


def _weighted_map(axes, figure, x, y, values, errors, shape, label):
    """Error-weighted mean of ``values`` in cells, on a symmetric diverging scale."""
    ny, nx = shape
    good = np.isfinite(values) & np.isfinite(errors) & (errors > 0)
    weight = 1.0 / errors[good] ** 2
    kwargs = dict(bins=MAP_BINS, range=[[0, ny], [0, nx]])
    total, _, _, _ = binned_statistic_2d(y[good], x[good], weight * values[good], "sum", **kwargs)
    norm, _, _, _ = binned_statistic_2d(y[good], x[good], weight, "sum", **kwargs)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(norm > 0, total / norm, np.nan)
    finite = np.abs(grid[np.isfinite(grid)])
    reach = max(float(np.percentile(finite, 95)) if finite.size else 0.0, 0.005)
    shown = axes.imshow(
        grid,
        origin="lower",
        extent=(0, nx, 0, ny),
        cmap="RdBu_r",
        vmin=-reach,
        vmax=reach,
        aspect="equal",
    )
    figure.colorbar(shown, ax=axes, label=label)


def _displacement_panel(axes, figure, matches: Table, shape) -> None:
    """Mean displacement of matched stars in cells, as arrows coloured by its length."""
    ny, nx = shape
    x, y = np.asarray(matches["x"], float), np.asarray(matches["y"], float)
    dx, dy = np.asarray(matches["dx"], float), np.asarray(matches["dy"], float)
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(dx) & np.isfinite(dy)
    unit = matches.meta.get("unit", "pix")
    if not good.any():
        axes.text(0.5, 0.5, "no displacements", ha="center", transform=axes.transAxes)
        return
    cells = max(4, MAP_BINS // 2)
    kwargs = dict(bins=cells, range=[[0, nx], [0, ny]])
    mean_dx, ex, ey, _ = binned_statistic_2d(x[good], y[good], dx[good], "mean", **kwargs)
    mean_dy, _, _, _ = binned_statistic_2d(x[good], y[good], dy[good], "mean", **kwargs)
    cx, cy = np.meshgrid(0.5 * (ex[1:] + ex[:-1]), 0.5 * (ey[1:] + ey[:-1]), indexing="ij")
    length = np.hypot(mean_dx, mean_dy)
    shown = axes.quiver(
        cx, cy, mean_dx, mean_dy, length, cmap="plasma", angles="xy", pivot="middle"
    )
    figure.colorbar(shown, ax=axes, label=f"mean displacement, {unit}")
    rms = float(np.sqrt(np.mean(dx[good] ** 2 + dy[good] ** 2)))
    axes.set_title(f"object − catalogue position (RMS {rms:.2f} {unit})", fontsize=9)
    axes.set_xlim(0, nx)
    axes.set_ylim(0, ny)
    axes.set_aspect("equal")


def plot_calibration_maps(result: CalibrationResult, path: str | Path) -> None:
    """Four maps: measured zero points, the ZP model, residuals, astrometric displacement."""
    matches = _require_matches(result)
    model = result.model
    shape = (model.frame.ny, model.frame.nx)
    kinds = _pair_kinds(matches)
    used = kinds["used"]
    x, y = np.asarray(matches["x"], float), np.asarray(matches["y"], float)
    color = np.nan_to_num(np.asarray(matches["color"], float), nan=model.default_color)
    measured = np.asarray(matches["delta"], float) - model.color_term * color
    figure = Figure(figsize=(11.0, 9.0))
    grid_x, grid_y = model.frame.grid(max(shape) / MODEL_GRID)
    zp_model = model.zero_point(grid_x, grid_y)
    limits = (float(zp_model.min()), float(zp_model.max()))
    spread = max(limits[1] - limits[0], 0.02)
    limits = (limits[0] - 0.25 * spread, limits[1] + 0.25 * spread)

    panels = [figure.add_subplot(2, 2, k) for k in (1, 2, 3, 4)]
    error = np.asarray(matches["error"], float)
    precise = used & (error <= PRECISE_STAR_ERROR)
    if precise.sum() < MIN_PRECISE_STARS:
        precise = used
    axes = panels[0]
    _star_map(axes, figure, x[precise], y[precise], measured[precise], "ZP, mag", "viridis", limits)
    axes.set_title(f"m_cat − m_inst − C·colour, {precise.sum()} precise stars", fontsize=9)

    axes = panels[1]
    shown = axes.imshow(
        zp_model,
        origin="lower",
        extent=(0, shape[1], 0, shape[0]),
        cmap="viridis",
        vmin=limits[0],
        vmax=limits[1],
        aspect="equal",
    )
    figure.colorbar(shown, ax=axes, label="ZP, mag")
    axes.set_title(f"model: order-{model.order} polynomial", fontsize=9)

    axes = panels[2]
    residual = np.where(used, np.asarray(matches["residual"], float), np.nan)
    _weighted_map(axes, figure, x, y, residual, error, shape, "mean residual, mag")
    axes.set_title("residuals (data − model), weighted mean in cells", fontsize=9)

    _displacement_panel(panels[3], figure, matches, shape)
    for axes in panels:
        axes.set_xlabel("x, pixels")
        axes.set_ylabel("y, pixels")
    figure.suptitle(model.system_description(), fontsize=10)
    figure.tight_layout()
    _save(figure, path)


def plot_color_diagnostics(diagnostics: ColorDiagnostics, path: str | Path) -> None:
    """Colour term (with error) found with each band as the primary magnitude."""
    trials = [t for t in diagnostics.trials if t.error is None and t.color_term is not None]
    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.add_subplot()
    if trials:
        position = np.arange(len(trials))
        colours = [
            "tab:green" if t.band == diagnostics.suggested_band else "tab:blue" for t in trials
        ]
        axes.bar(
            position,
            [t.color_term for t in trials],
            yerr=[t.color_term_err or 0.0 for t in trials],
            color=colours,
        )
        axes.set_xticks(position, [f"{t.band}\n({t.color_name})" for t in trials])
    axes.axhline(0.0, color="k", lw=0.5)
    axes.set_ylabel("colour term C")
    axes.set_title(
        f"colour-term diagnostics: best band {diagnostics.suggested_band or '—'}", fontsize=10
    )
    figure.tight_layout()
    _save(figure, path)


def plot_detection_limit(
    objects: Table,
    calibration: CalibrationResult | None,
    limits: DetectionLimits,
    path: str | Path,
) -> None:
    """S/N against magnitude, the fitted noise model, the limits and the local limits."""
    mag = calibrated_magnitudes(objects, calibration, limits.color)
    with np.errstate(divide="ignore", invalid="ignore"):
        sn = np.asarray(objects["flux"], float) / np.asarray(objects["fluxerr"], float)
    flags = np.asarray(objects["flags"]) if "flags" in objects.colnames else np.zeros(len(sn))
    good = np.isfinite(mag) & np.isfinite(sn) & (sn > 0)
    figure = Figure(figsize=(7.0, 5.0))
    axes = figure.add_subplot()
    clean = good & (flags == 0)
    axes.scatter(mag[good & ~clean], sn[good & ~clean], s=3, c="0.7", label="flagged")
    axes.scatter(mag[clean], sn[clean], s=3, c="tab:blue", label="unflagged objects")
    if "bg_fluxerr" in objects.colnames:
        local = local_limits(objects, calibration, limits.sn, limits.color)
        shown = np.isfinite(local)
        axes.scatter(
            local[shown],
            np.full(shown.sum(), limits.sn),
            s=4,
            c="tab:orange",
            alpha=0.5,
            label=f"local limits (S/N {limits.sn:g}, background only)",
        )
    low, high = limits.magnitude_range
    curve = np.linspace(low - 0.5, max(high, max(limits.limits.values())) + 0.5, 200)
    axes.plot(curve, limits.noise_model.sn(curve), "k-", lw=1, label="noise model")
    for level, value in sorted(limits.limits.items()):
        axes.axhline(level, color="tab:red", lw=0.5, ls=":")
        axes.axvline(value, color="tab:red", lw=0.8 if level == limits.sn else 0.4)
        axes.annotate(
            f"S/N {level:g}: {value:.2f}",
            (value, level),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=7,
            color="tab:red",
        )
    axes.set_yscale("log")
    axes.set_ylim(max(0.5, np.nanmin(sn[good]) * 0.5) if good.any() else 0.5, None)
    axes.set_xlabel(textwrap.fill(limits.description, 90), fontsize=8)
    axes.set_ylabel("S/N")
    axes.legend(loc="upper right", fontsize="small", markerscale=3)
    axes.set_title(f"detection limit {limits.limit:.2f} at S/N = {limits.sn:g}", fontsize=10)
    figure.tight_layout()
    _save(figure, path)


def plot_limit_histogram(
    detected_mag: NDArray,
    flags: NDArray,
    catalog_mag: NDArray,
    limits: DetectionLimits,
    path: str | Path,
    bin_width: float = 0.25,
) -> None:
    """Histograms of detected (unflagged, flagged) and catalogue magnitudes with the limit."""
    detected_mag = np.asarray(detected_mag, float)
    flags = np.asarray(flags)
    catalog_mag = np.asarray(catalog_mag, float)
    values = np.concatenate([detected_mag[np.isfinite(detected_mag)], catalog_mag])
    figure = Figure(figsize=(7.0, 4.6))
    axes = figure.add_subplot()
    if values.size:
        lo, hi = np.floor(np.nanmin(values)), np.ceil(np.nanmax(values))
        bins = np.arange(lo, hi + bin_width, bin_width)
        axes.hist(
            catalog_mag,
            bins=bins,
            histtype="step",
            color="k",
            lw=1.2,
            label=f"catalogue stars on the image ({catalog_mag.size})",
        )
        clean = np.isfinite(detected_mag) & (flags == 0)
        flagged = np.isfinite(detected_mag) & (flags != 0)
        axes.hist(
            [detected_mag[clean], detected_mag[flagged]],
            bins=bins,
            stacked=True,
            color=["tab:blue", "tab:orange"],
            alpha=0.7,
            label=[f"detected, unflagged ({clean.sum()})", f"detected, flagged ({flagged.sum()})"],
        )
    axes.axvline(limits.limit, color="tab:red", label=f"S/N {limits.sn:g} limit {limits.limit:.2f}")
    axes.set_yscale("log")
    axes.set_xlabel("magnitude")
    axes.set_ylabel("number per bin")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    _save(figure, path)
