"""Object detection: background maps, matched-filter extraction and object flags.

The default engine is sep, run in-process. ``engine="sextractor"`` runs the
SExtractor binary through :mod:`pipeline.sextractor` and returns the same
:class:`DetectionResult`, so everything downstream is engine-agnostic.

Threshold convention: ``detect_thresh`` is in units of the noise of the
*filtered* image (true significance), so the depth does not change with the
smoothing kernel. SExtractor's DETECT_THRESH is in units of the unfiltered
noise; with its default 3×3 kernel a SExtractor threshold T is T/0.375 here,
so STDWeb's fixed 2σ is ≈5.3σ in our units. Defaults (3.5σ, 5 pixels, a 2-pixel FWHM
Gaussian kernel, deblending contrast 0.001) were chosen on simulated 2048²
skies: ~1 false detection per 4·10⁶ pixels of pure noise (a 3-pixel kernel
gives ~36, 3σ hundreds) and ≥98 % of the stars with aperture S/N > 10 found
(a wider kernel or SExtractor's contrast 0.005 merges faint stars into the
wings of bright neighbours). ``tests/pipeline/test_detection.py`` checks both.

sep's own matched-filter mode (``filter_type="matched"``) breaks its cleaning
step (cleaning then removes most real stars, sep 1.4.1), so we convolve in
plain mode and pass the filtered-noise map as the error instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import sep
from astropy.table import Table
from pydantic import Field
from scipy import ndimage

from pipeline.background import BackgroundMaps, as_sep_array, estimate_background
from pipeline.flags import ObjectFlag
from pipeline.masking import MaskBit
from pipeline.steps.base import StepConfig

ENGINES = ("sep", "sextractor")

# Mask bits whose pixels hold no usable data: left out of detection altogether.
NO_DATA_BITS = MaskBit.NONFINITE | MaskBit.OUTSIDE_DATA | MaskBit.CUSTOM
# Automatic mask bits that leave the pixel value in place: objects touching them
# are kept (a saturated star is still a star) but flagged FOOTPRINT_MASKED.
AUTOMATIC_BITS = MaskBit.NONFINITE | MaskBit.OUTSIDE_DATA | MaskBit.SATURATED | MaskBit.COSMIC

# sep's extraction flags → ours.
SEP_FLAG_MAP: dict[int, int] = {
    sep.OBJ_MERGED: ObjectFlag.DEBLENDED,
    sep.OBJ_TRUNC: ObjectFlag.EDGE_TRUNCATED,
    sep.OBJ_DOVERFLOW: ObjectFlag.ISOPHOTAL_INCOMPLETE,  # deblending ran out of memory
    sep.OBJ_SINGU: ObjectFlag.ISOPHOTAL_INCOMPLETE,  # singular moments: shape unreliable
}

# Columns every engine returns, in order (positions 0-based, theta in radians).
DETECTION_COLUMNS = (
    "id",  # segmentation label of the object
    "x",
    "y",
    "a",
    "b",
    "theta",
    "peak",  # background-subtracted peak value
    "npix",  # pixels in the isophotal footprint
    "flux_iso",
    "flux_auto",  # Kron-like elliptical aperture flux
    "fluxerr_auto",
    "kron_radius",
    "flux_radius",  # half-light radius
    "flags",
)

# Pixel buffer sizes for crowded large frames (sep's defaults are 300 000 / 1024).
MIN_PIXSTACK = 1_000_000
MAX_PIXSTACK = 20_000_000
SUB_OBJECT_LIMIT = 4096
KRON_FACTOR = 2.5  # SExtractor's PHOT_AUTOPARAMS default
KRON_MIN_RADIUS = 3.5  # same, in units of the object's a/b


class DetectionConfig(StepConfig):
    """Parameters of object detection (part of the photometry step config)."""

    detection_engine: Literal["sep", "sextractor"] = Field(
        "sep",
        description="Detection program: sep (built in) or SExtractor (needs `source-extractor`).",
    )
    bg_size: int = Field(
        256,
        ge=8,
        description="Background mesh size in pixels; half the image side is used if smaller.",
    )
    bg_filter_size: int = Field(
        3, ge=1, le=15, description="Median filter applied to the background mesh, in cells."
    )
    detect_thresh: float = Field(
        3.5,
        gt=0,
        description="Detection threshold in units of the background noise of the filtered image.",
    )
    minarea: int = Field(5, ge=1, description="Minimum number of connected pixels for an object.")
    detect_kernel_fwhm: float = Field(
        2.0,
        ge=0,
        le=20,
        description="FWHM (pixels) of the Gaussian smoothing kernel for detection; 0 disables it.",
    )
    deblend_nthresh: int = Field(32, ge=1, le=256, description="Number of deblending levels.")
    deblend_cont: float = Field(
        0.0001,
        ge=0,
        le=1,
        description="Minimum flux contrast for deblending; 1 disables deblending.",
    )


@dataclass
class DetectionResult:
    """Objects found in an image and the images made along the way.

    Attributes
    ----------
    objects : astropy.table.Table
        One row per object with :data:`DETECTION_COLUMNS`.
    background : BackgroundMaps
        Background level and noise maps.
    segmentation : numpy.ndarray
        int32 map: 0 for sky, ``objects['id']`` for object pixels.
    filtered : numpy.ndarray
        Background-subtracted image convolved with the detection kernel.
    engine : str
        Which engine produced this.
    """

    objects: Table
    background: BackgroundMaps
    segmentation: np.ndarray
    filtered: np.ndarray
    engine: str


def gaussian_kernel(fwhm: float) -> np.ndarray | None:
    """Normalised 2-D Gaussian kernel of the given FWHM; None for ``fwhm <= 0``."""
    if fwhm <= 0:
        return None
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    half = max(1, math.ceil(2 * sigma))
    grid = np.arange(-half, half + 1)
    profile = np.exp(-0.5 * (grid / sigma) ** 2)
    kernel = np.outer(profile, profile)
    return (kernel / kernel.sum()).astype(np.float32)


def filter_image(data: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    """Convolve ``data`` with a separable kernel (rows then columns); copy if no kernel."""
    if kernel is None:
        return data.astype(np.float32, copy=True)
    row = kernel.sum(axis=0)
    out = ndimage.correlate1d(data.astype(np.float32), row, axis=1, mode="constant")
    return ndimage.correlate1d(out, kernel.sum(axis=1), axis=0, mode="constant")


def split_mask(mask: np.ndarray | None, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean maps of pixels with no usable data and of automatically masked pixels.

    Non-finite image pixels always count as no-data, whatever the mask says.
    """
    nodata = ~np.isfinite(image)
    if mask is None:
        return nodata, nodata.copy()
    mask = np.asarray(mask)
    if mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape}")
    nodata |= (mask & NO_DATA_BITS) != 0
    return nodata, (mask & AUTOMATIC_BITS) != 0


def map_flags(raw_flags: np.ndarray, mapping: dict[int, int] = SEP_FLAG_MAP) -> np.ndarray:
    """Translate an engine's extraction flags to :class:`ObjectFlag` bits."""
    raw_flags = np.asarray(raw_flags).astype(np.int64)  # sep returns int16
    out = np.zeros(raw_flags.shape, np.int32)
    for theirs, ours in mapping.items():
        out[(raw_flags & theirs) != 0] |= int(ours)
    return out


def footprint_flags(
    segmentation: np.ndarray,
    ids: np.ndarray,
    image: np.ndarray,
    mask: np.ndarray | None,
    nodata: np.ndarray,
    saturation: float | None,
) -> np.ndarray:
    """Flags from the pixels of each object's footprint.

    ``FOOTPRINT_MASKED`` when the footprint holds, or borders, masked pixels;
    ``SATURATED`` when any footprint pixel reaches ``saturation`` or carries the
    saturated mask bit.
    """
    n_labels = int(segmentation.max(initial=0))
    bits = np.zeros(n_labels + 1, np.int64)
    peak_raw = np.full(n_labels + 1, -np.inf)
    member = segmentation > 0
    labels = segmentation[member]
    if mask is not None:
        np.bitwise_or.at(bits, labels, mask[member].astype(np.int64))
    values = image[member]
    np.maximum.at(peak_raw, labels, np.where(np.isfinite(values), values, -np.inf))
    if nodata.any():
        # Excluded pixels cannot be inside a footprint: look one pixel around it.
        near = ndimage.binary_dilation(nodata) & member
        touching = np.zeros(n_labels + 1, bool)
        touching[np.unique(segmentation[near])] = True
    else:
        touching = np.zeros(n_labels + 1, bool)
    flags = np.zeros(len(ids), np.int32)
    ids = np.asarray(ids, int)
    flags[((bits[ids] & AUTOMATIC_BITS) != 0) | touching[ids]] |= ObjectFlag.FOOTPRINT_MASKED
    saturated = (bits[ids] & MaskBit.SATURATED) != 0
    if saturation is not None and np.isfinite(saturation):
        saturated |= peak_raw[ids] >= saturation
    flags[saturated] |= ObjectFlag.SATURATED
    return flags


def kernel_noise_factor(kernel: np.ndarray | None) -> float:
    """Noise of the kernel-filtered image relative to the pixel noise (white noise)."""
    if kernel is None:
        return 1.0
    return float(np.sqrt((kernel**2).sum()) / kernel.sum())


def _extract(data, rms, detect_mask, config: DetectionConfig, kernel):
    """sep.extract with buffers grown on overflow (crowded frames)."""
    filtered_noise = as_sep_array(rms * kernel_noise_factor(kernel))
    pixstack = int(np.clip(data.size // 8, MIN_PIXSTACK, MAX_PIXSTACK))
    sep.set_sub_object_limit(SUB_OBJECT_LIMIT)
    while True:
        sep.set_extract_pixstack(pixstack)
        try:
            return sep.extract(
                data,
                config.detect_thresh,
                err=filtered_noise,
                mask=detect_mask,
                minarea=config.minarea,
                filter_kernel=kernel,
                filter_type="conv",
                deblend_nthresh=config.deblend_nthresh,
                deblend_cont=config.deblend_cont,
                segmentation_map=True,
            )
        except Exception as exc:  # sep raises bare Exception on buffer overflow
            if "pixel buffer full" not in str(exc) or pixstack >= MAX_PIXSTACK:
                raise ValueError(
                    f"object extraction failed ({exc}); the image is too crowded for this "
                    "threshold: raise detect_thresh or minarea"
                ) from exc
            pixstack = min(pixstack * 4, MAX_PIXSTACK)


def auto_photometry(
    data: np.ndarray,
    rms: np.ndarray,
    bad: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
    gain: float | None = None,
) -> dict[str, np.ndarray]:
    """Kron radius, Kron ("auto") flux and half-light radius at the given ellipses.

    Follows SExtractor's MAG_AUTO recipe: Kron radius within 6·a, flux in
    2.5 Kron radii (at least 3.5 a/b), half-light radius normalised to that flux.
    """
    a = np.where(np.isfinite(a) & (a > 0.5), a, 0.5)
    b = np.where(np.isfinite(b) & (b > 0.5), b, 0.5)
    theta = np.clip(np.nan_to_num(theta), -np.pi / 2, np.pi / 2)
    mask8 = as_sep_array(bad, np.uint8)
    kron, _ = sep.kron_radius(data, x, y, a, b, theta, 6.0, mask=mask8)
    kron = np.where(np.isfinite(kron) & (kron > 0), kron, KRON_MIN_RADIUS)
    radius = np.maximum(KRON_FACTOR * kron, KRON_MIN_RADIUS)
    flux, fluxerr, _ = sep.sum_ellipse(
        data, x, y, a, b, theta, radius, err=rms, mask=mask8, gain=gain, subpix=1
    )
    rmax = np.maximum(6.0 * a, 3.0)
    normflux = np.where(flux > 0, flux, np.nan)
    half_light, _ = sep.flux_radius(
        data, x, y, rmax, 0.5, normflux=np.nan_to_num(normflux, nan=1.0), mask=mask8, subpix=5
    )
    half_light = np.where(np.isfinite(normflux), half_light, np.nan)
    return {
        "kron_radius": kron,
        "flux_auto": flux,
        "fluxerr_auto": fluxerr,
        "flux_radius": half_light,
    }


def _detect_sep(
    image: np.ndarray,
    mask: np.ndarray | None,
    config: DetectionConfig,
    saturation: float | None,
    gain: float | None,
) -> DetectionResult:
    nodata, automatic = split_mask(mask, image)
    background = estimate_background(
        image, bad=nodata | automatic, mesh=config.bg_size, filter_size=config.bg_filter_size
    )
    data = as_sep_array(np.where(nodata, 0.0, image - background.level))
    kernel = gaussian_kernel(config.detect_kernel_fwhm)
    raw, segmentation = _extract(
        data, background.rms, as_sep_array(nodata, np.uint8), config, kernel
    )
    segmentation = segmentation.astype(np.int32, copy=False)
    ids = np.arange(1, len(raw) + 1, dtype=np.int32)
    table = Table()
    table["id"] = ids
    for name in ("x", "y", "a", "b", "theta", "peak"):
        table[name] = np.asarray(raw[name], float)
    table["npix"] = np.asarray(raw["npix"], np.int32)
    table["flux_iso"] = np.asarray(raw["flux"], float)
    if len(raw):
        auto = auto_photometry(
            data,
            background.rms,
            nodata,
            table["x"].data,
            table["y"].data,
            table["a"].data,
            table["b"].data,
            table["theta"].data,
            gain,
        )
    else:
        auto = {name: np.zeros(0) for name in ("kron_radius", "flux_auto", "fluxerr_auto")}
        auto["flux_radius"] = np.zeros(0)
    for name in ("flux_auto", "fluxerr_auto", "kron_radius", "flux_radius"):
        table[name] = np.asarray(auto[name], float)
    flags = map_flags(raw["flag"]) | footprint_flags(
        segmentation, ids, image, mask, nodata, saturation
    )
    table["flags"] = flags.astype(np.int32)
    return DetectionResult(
        objects=table[list(DETECTION_COLUMNS)],
        background=background,
        segmentation=segmentation,
        filtered=filter_image(data, kernel),
        engine="sep",
    )


def detect_objects(
    image: np.ndarray,
    mask: np.ndarray | None,
    config: DetectionConfig,
    engine: str | None = None,
    *,
    saturation: float | None = None,
    gain: float | None = None,
) -> DetectionResult:
    """Detect objects in ``image`` and return them with background and segmentation maps.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image in ADU, sky not subtracted (or subtracted; the background map
        absorbs either).
    mask : numpy.ndarray, optional
        Inspection mask (uint8 bits of :class:`pipeline.masking.MaskBit`). Custom
        and no-data pixels are excluded; objects touching other masked pixels
        are kept and flagged ``FOOTPRINT_MASKED``.
    config : DetectionConfig
        Detection parameters (the photometry step config is one).
    engine : {"sep", "sextractor"}, optional
        Overrides ``config.detection_engine``.
    saturation : float, optional
        Saturation level in ADU for the ``SATURATED`` flag.
    gain : float, optional
        Gain in e-/ADU for the Poisson part of the auto-flux errors.

    Returns
    -------
    DetectionResult

    Raises
    ------
    ValueError
        On an unknown engine, a non-2-D image, or an image with no usable pixels.
    """
    engine = engine or config.detection_engine
    if engine not in ENGINES:
        raise ValueError(f"unknown detection engine {engine!r}; choose one of {ENGINES}")
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got {image.ndim} dimensions")
    if engine == "sextractor":
        from pipeline.sextractor import detect_sextractor

        return detect_sextractor(image, mask, config, saturation=saturation, gain=gain)
    return _detect_sep(image, mask, config, saturation, gain)


def windowed_positions(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fwhm: float,
    bad: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-windowed centroids (SExtractor's XWIN/YWIN), keeping the input where they fail.

    ``data`` must be background-subtracted. A refined position is rejected if it
    moved by more than one FWHM (a neighbour pulled it away).
    """
    if len(x) == 0:
        return np.asarray(x, float), np.asarray(y, float)
    sigma = np.full(len(x), fwhm / 2.3548)
    mask8 = None if bad is None else as_sep_array(bad, np.uint8)
    xw, yw, flag = sep.winpos(as_sep_array(data), x, y, sigma, mask=mask8)
    good = (
        (flag == 0)
        & np.isfinite(xw)
        & np.isfinite(yw)
        & (np.hypot(xw - x, yw - y) < max(fwhm, 1.0))
    )
    return np.where(good, xw, x), np.where(good, yw, y)
