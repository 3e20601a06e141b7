"""Diagnostic plots of the photometry step (PNG files, matplotlib Agg).

Figures are built with :class:`matplotlib.figure.Figure` directly, not pyplot,
so that worker threads never share global plotting state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.visualization import ZScaleInterval
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.flags import ObjectFlag
from pipeline.fwhm import FwhmResult
from pipeline.prefilter import FEATURES, PrefilterModel, standardised_features

MAX_DISPLAY_SIDE = 1200  # image previews are block-averaged down to about this size
DPI = 100

# Flag groups for colouring, checked in this order (first match wins).
FLAG_GROUPS = (
    ("shape outlier", ObjectFlag.SHAPE_OUTLIER, "tab:red"),
    ("saturated", ObjectFlag.SATURATED, "tab:purple"),
    ("masked pixels", ObjectFlag.FOOTPRINT_MASKED | ObjectFlag.APERTURE_MASKED, "tab:orange"),
    ("deblended", ObjectFlag.DEBLENDED, "tab:olive"),
    ("other flags", ~0, "tab:gray"),
)


def _save(figure: Figure, path: str | Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI)


def flag_group(flags: np.ndarray) -> list[tuple[str, np.ndarray, str]]:
    """Split objects into the clean set and :data:`FLAG_GROUPS` (label, boolean, colour)."""
    flags = np.asarray(flags, np.int64)
    remaining = flags != 0
    groups = [("unflagged", flags == 0, "tab:blue")]
    for label, bits, colour in FLAG_GROUPS:
        member = remaining & ((flags & int(bits)) != 0)
        remaining &= ~member
        groups.append((label, member, colour))
    return groups


def plot_fwhm_map(result: FwhmResult, x: np.ndarray, y: np.ndarray, path: str | Path) -> None:
    """FWHM map over the field with the stars that defined it."""
    _, _, grid = result.fwhm_map.grid(64)
    figure = Figure(figsize=(6.4, 5.2))
    axes = figure.add_subplot()
    ny, nx = result.fwhm_map.shape
    shown = axes.imshow(grid, origin="lower", extent=(0, nx, 0, ny), cmap="viridis", aspect="equal")
    used = np.asarray(result.used, bool)
    values = result.per_object[used]
    axes.scatter(
        np.asarray(x)[used],
        np.asarray(y)[used],
        c=values,
        s=10,
        cmap="viridis",
        vmin=grid.min(),
        vmax=grid.max(),
        edgecolors="white",
        linewidths=0.3,
    )
    figure.colorbar(shown, ax=axes, label="FWHM, pixels")
    rms = np.nanstd(values) if values.size else np.nan
    axes.set_title(
        f"FWHM {result.fwhm:.2f} px (map {grid.min():.2f}–{grid.max():.2f}), star RMS {rms:.2f}"
    )
    axes.set_xlabel("x, pixels")
    axes.set_ylabel("y, pixels")
    figure.tight_layout()
    _save(figure, path)


def plot_fwhm_mag(table: Table, result: FwhmResult, path: str | Path) -> None:
    """Per-object FWHM against instrumental magnitude; stars used for the FWHM marked."""
    figure = Figure(figsize=(6.4, 4.4))
    axes = figure.add_subplot()
    mag = np.asarray(table["mag"], float)
    fwhm = np.asarray(table["fwhm"], float)
    used = np.asarray(table["fwhm_used"], bool) if "fwhm_used" in table.colnames else None
    axes.scatter(mag, fwhm, s=4, c="0.6", label="all objects")
    if used is not None and used.any():
        axes.scatter(mag[used], fwhm[used], s=8, c="tab:blue", label="used for the FWHM")
    axes.axhline(result.fwhm, color="tab:red", label=f"image FWHM {result.fwhm:.2f} px")
    finite = fwhm[np.isfinite(fwhm)]
    if finite.size:
        axes.set_ylim(0, min(np.percentile(finite, 99) * 1.5, 5 * result.fwhm))
    axes.set_xlabel("instrumental magnitude")
    axes.set_ylabel("FWHM, pixels")
    axes.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    _save(figure, path)


def plot_prefilter(table: Table, model: PrefilterModel, path: str | Path) -> None:
    """Corner plot of the detrended prefilter features, coloured by flags."""
    features = standardised_features(model, table)
    n = len(FEATURES)
    figure = Figure(figsize=(2.0 * (n - 1) + 1, 2.0 * (n - 1) + 0.6))
    groups = flag_group(np.asarray(table["flags"]))
    limit = 12.0  # residuals are in units of their scatter; the bulk sits within ±3
    for row in range(1, n):
        for col in range(row):
            axes = figure.add_subplot(n - 1, n - 1, (row - 1) * (n - 1) + col + 1)
            for label, member, colour in groups:
                if member.any():
                    axes.scatter(
                        np.clip(features[member, col], -limit, limit),
                        np.clip(features[member, row], -limit, limit),
                        s=3,
                        c=colour,
                        label=f"{label} ({int(member.sum())})",
                    )
            axes.set_xlim(-limit, limit)
            axes.set_ylim(-limit, limit)
            axes.tick_params(labelsize=6)
            if row == n - 1:
                axes.set_xlabel(FEATURES[col], fontsize=8)
            if col == 0:
                axes.set_ylabel(FEATURES[row], fontsize=8)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper right", fontsize="small", markerscale=3)
    figure.suptitle(
        f"Shape prefilter: {model.n_training} training objects, "
        f"{int(((np.asarray(table['flags']) & ObjectFlag.SHAPE_OUTLIER) != 0).sum())} "
        "outliers",
        fontsize=10,
    )
    figure.tight_layout()
    _save(figure, path)


def display_image(image: np.ndarray, max_side: int = MAX_DISPLAY_SIDE) -> tuple[np.ndarray, int]:
    """Block-averaged copy of ``image`` no larger than ``max_side``; also the block size."""
    block = max(1, int(np.ceil(max(image.shape) / max_side)))
    if block == 1:
        return image.astype(np.float32), 1
    ny, nx = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    view = image[:ny, :nx].reshape(ny // block, block, nx // block, block)
    with np.errstate(all="ignore"):
        return np.nanmean(view, axis=(1, 3)).astype(np.float32), block


def plot_objects(image: np.ndarray, table: Table, aperture_radius: float, path: str | Path) -> None:
    """The image (zscale) with the measured objects circled, coloured by flags."""
    shown, block = display_image(image)
    finite = shown[np.isfinite(shown)]
    vmin, vmax = ZScaleInterval().get_limits(finite) if finite.size else (0.0, 1.0)
    ny, nx = image.shape
    scale = 9.0 / max(nx, ny)
    figure = Figure(figsize=(max(4.0, nx * scale) + 1.5, max(4.0, ny * scale)))
    axes = figure.add_subplot()
    axes.imshow(
        shown,
        origin="lower",
        cmap="gray",
        vmin=vmin,
        vmax=vmax,
        extent=(-0.5, block * shown.shape[1] - 0.5, -0.5, block * shown.shape[0] - 0.5),
        interpolation="nearest",
    )
    # Marker size in points² from the aperture radius in data pixels.
    points_per_pixel = 72.0 * figure.get_figwidth() / (nx * 1.2)
    size = max(4.0, (2 * aperture_radius * points_per_pixel) ** 2)
    for label, member, colour in flag_group(np.asarray(table["flags"])):
        if member.any():
            axes.scatter(
                np.asarray(table["x"])[member],
                np.asarray(table["y"])[member],
                s=size,
                facecolors="none",
                edgecolors=colour,
                linewidths=0.6,
                label=f"{label} ({int(member.sum())})",
            )
    axes.set_xlim(-0.5, nx - 0.5)
    axes.set_ylim(-0.5, ny - 0.5)
    axes.legend(loc="upper right", fontsize="x-small", framealpha=0.7)
    axes.set_title(f"{len(table)} objects")
    figure.tight_layout()
    _save(figure, path)
