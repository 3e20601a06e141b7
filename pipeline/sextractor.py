"""SExtractor adapter: the same detection as :mod:`pipeline.detection`, by the binary.

Runs ``source-extractor`` (Debian's name; ``sex`` on older installs) in a
temporary folder and converts its catalogue and check images into a
:class:`~pipeline.detection.DetectionResult` with the same columns, units,
0-based positions and flag bits as the sep engine. No-data and custom-masked
pixels get zero weight (left out of background and detection); the footprint
flags are computed from SExtractor's segmentation map by the same code as for sep.
The detection threshold is converted so that both engines detect at the same
significance in the filtered image (see :mod:`pipeline.detection`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from pipeline.background import BackgroundMaps, effective_mesh
from pipeline.detection import (
    DETECTION_COLUMNS,
    DetectionConfig,
    DetectionResult,
    footprint_flags,
    gaussian_kernel,
    kernel_noise_factor,
    map_flags,
    split_mask,
)
from pipeline.flags import ObjectFlag

BINARY_NAMES = ("source-extractor", "sex")
TIMEOUT_SECONDS = 900

# SExtractor's FLAGS → ours (its bits 1–32 mean what ours do; 64/128 are overflows).
SEXTRACTOR_FLAG_MAP: dict[int, int] = {
    1: ObjectFlag.NEIGHBOURS,
    2: ObjectFlag.DEBLENDED,
    4: ObjectFlag.SATURATED,
    8: ObjectFlag.EDGE_TRUNCATED,
    16: ObjectFlag.APERTURE_INCOMPLETE,
    32: ObjectFlag.ISOPHOTAL_INCOMPLETE,
    64: ObjectFlag.ISOPHOTAL_INCOMPLETE,
    128: ObjectFlag.ISOPHOTAL_INCOMPLETE,
}
PARAMETERS = (
    "NUMBER",
    "X_IMAGE",
    "Y_IMAGE",
    "A_IMAGE",
    "B_IMAGE",
    "THETA_IMAGE",
    "FLUX_MAX",
    "ISOAREA_IMAGE",
    "FLUX_ISO",
    "FLUX_AUTO",
    "FLUXERR_AUTO",
    "KRON_RADIUS",
    "FLUX_RADIUS",
    "FLAGS",
)
CHECK_IMAGES = {
    "SEGMENTATION": "segmentation.fits",
    "BACKGROUND": "background.fits",
    "BACKGROUND_RMS": "rms.fits",
    "FILTERED": "filtered.fits",
}


def find_sextractor() -> str | None:
    """Path of the SExtractor binary, or None when it is not installed."""
    for name in BINARY_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _write_kernel(path: Path, kernel: np.ndarray) -> None:
    rows = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in kernel)
    path.write_text(f"CONV NORM\n# Gaussian kernel written by SkySift\n{rows}\n")


def _options(
    config: DetectionConfig,
    shape: tuple[int, int],
    kernel: np.ndarray | None,
    saturation: float | None,
    gain: float | None,
    folder: Path,
) -> list[str]:
    # Our threshold is in filtered-noise units, SExtractor's in pixel-noise units.
    threshold = config.detect_thresh * kernel_noise_factor(kernel)
    options = {
        "CATALOG_NAME": str(folder / "catalog.fits"),
        "CATALOG_TYPE": "FITS_1.0",
        "PARAMETERS_NAME": str(folder / "catalog.param"),
        "DETECT_TYPE": "CCD",
        "DETECT_MINAREA": str(config.minarea),
        "DETECT_THRESH": f"{threshold:.6g}",
        "ANALYSIS_THRESH": f"{threshold:.6g}",
        "FILTER": "N" if kernel is None else "Y",
        "FILTER_NAME": str(folder / "kernel.conv"),
        "DEBLEND_NTHRESH": str(config.deblend_nthresh),
        "DEBLEND_MINCONT": f"{config.deblend_cont:g}",
        "CLEAN": "Y",
        "CLEAN_PARAM": "1.0",
        "WEIGHT_TYPE": "MAP_WEIGHT",
        "WEIGHT_IMAGE": str(folder / "weight.fits"),
        "WEIGHT_THRESH": "0",
        "INTERP_TYPE": "NONE",  # do not fill zero-weight pixels from their neighbours
        "PHOT_AUTOPARAMS": "2.5,3.5",
        "PHOT_FLUXFRAC": "0.5",
        "SATUR_LEVEL": f"{saturation:.8g}" if saturation and np.isfinite(saturation) else "1e20",
        "GAIN": f"{gain:.6g}" if gain and gain > 0 else "0",
        "PIXEL_SCALE": "1.0",
        "BACK_TYPE": "AUTO",
        "BACK_SIZE": str(effective_mesh(shape, config.bg_size)),
        "BACK_FILTERSIZE": str(config.bg_filter_size),
        "BACKPHOTO_TYPE": "GLOBAL",
        "CHECKIMAGE_TYPE": ",".join(CHECK_IMAGES),
        "CHECKIMAGE_NAME": ",".join(str(folder / name) for name in CHECK_IMAGES.values()),
        "MEMORY_OBJSTACK": "30000",
        "MEMORY_PIXSTACK": str(int(np.clip(shape[0] * shape[1] // 8, 1_000_000, 20_000_000))),
        "MEMORY_BUFSIZE": "4096",
        "VERBOSE_TYPE": "QUIET",
        "WRITE_XML": "N",
        "NTHREADS": "1",
    }
    args: list[str] = []
    for key, value in options.items():
        args += [f"-{key}", value]
    return args


def _read_check(folder: Path, kind: str, dtype) -> np.ndarray:
    with fits.open(folder / CHECK_IMAGES[kind]) as hdul:
        return np.ascontiguousarray(hdul[0].data, dtype=dtype)


def run_sextractor(
    image: np.ndarray,
    weight: np.ndarray,
    config: DetectionConfig,
    kernel: np.ndarray | None,
    saturation: float | None,
    gain: float | None,
    folder: Path,
) -> Table:
    """Run the binary on ``image`` in ``folder``; return its raw catalogue."""
    binary = find_sextractor()
    if binary is None:
        raise ValueError(
            "SExtractor (source-extractor) is not installed; install the Debian package "
            "source-extractor or choose the sep detection engine"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits.PrimaryHDU(image.astype(np.float32)).writeto(folder / "image.fits")
        fits.PrimaryHDU(weight.astype(np.float32)).writeto(folder / "weight.fits")
    (folder / "catalog.param").write_text("\n".join(PARAMETERS) + "\n")
    if kernel is not None:
        _write_kernel(folder / "kernel.conv", kernel)
    command = [
        binary,
        str(folder / "image.fits"),
        *_options(config, image.shape, kernel, saturation, gain, folder),
    ]
    try:
        done = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired as exc:
        raise ValueError(f"SExtractor did not finish within {TIMEOUT_SECONDS} s") from exc
    if done.returncode != 0 or not (folder / "catalog.fits").exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ValueError(f"SExtractor failed (exit {done.returncode}): {' | '.join(tail)}")
    with fits.open(folder / "catalog.fits") as hdul:
        return Table(hdul[1].data)


def detect_sextractor(
    image: np.ndarray,
    mask: np.ndarray | None,
    config: DetectionConfig,
    *,
    saturation: float | None = None,
    gain: float | None = None,
) -> DetectionResult:
    """Detect objects with SExtractor; the contract of :func:`pipeline.detection.detect_objects`."""
    nodata, _ = split_mask(mask, image)
    if nodata.all():
        raise ValueError("no usable pixels for detection: all are masked or NaN")
    kernel = gaussian_kernel(config.detect_kernel_fwhm)
    fill = float(np.median(image[~nodata]))
    pixels = np.where(nodata, fill, image)
    with tempfile.TemporaryDirectory(prefix="skysift-sex-") as tmp:
        folder = Path(tmp)
        raw = run_sextractor(
            pixels, (~nodata).astype(np.float32), config, kernel, saturation, gain, folder
        )
        segmentation = _read_check(folder, "SEGMENTATION", np.int32)
        level = _read_check(folder, "BACKGROUND", np.float32)
        rms = _read_check(folder, "BACKGROUND_RMS", np.float32)
        filtered = _read_check(folder, "FILTERED", np.float32)
    good_rms = rms[(rms > 0) & (rms < 1e29)]
    global_rms = float(np.median(good_rms)) if good_rms.size else 1e-12
    rms = np.where((rms > 0) & (rms < 1e29), rms, global_rms).astype(np.float32)
    background = BackgroundMaps(
        level=level,
        rms=rms,
        global_level=float(np.median(level[~nodata])),
        global_rms=global_rms,
        mesh=effective_mesh(image.shape, config.bg_size),
    )
    filtered = np.where(np.abs(filtered) < 1e29, filtered, np.nan).astype(np.float32)
    ids = np.asarray(raw["NUMBER"], np.int32)
    table = Table()
    table["id"] = ids
    table["x"] = np.asarray(raw["X_IMAGE"], float) - 1.0  # FITS 1-based → 0-based
    table["y"] = np.asarray(raw["Y_IMAGE"], float) - 1.0
    table["a"] = np.asarray(raw["A_IMAGE"], float)
    table["b"] = np.asarray(raw["B_IMAGE"], float)
    table["theta"] = np.deg2rad(np.asarray(raw["THETA_IMAGE"], float))
    table["peak"] = np.asarray(raw["FLUX_MAX"], float)
    table["npix"] = np.asarray(raw["ISOAREA_IMAGE"], np.int32)
    table["flux_iso"] = np.asarray(raw["FLUX_ISO"], float)
    table["flux_auto"] = np.asarray(raw["FLUX_AUTO"], float)
    table["fluxerr_auto"] = np.asarray(raw["FLUXERR_AUTO"], float)
    table["kron_radius"] = np.asarray(raw["KRON_RADIUS"], float)
    radius = np.asarray(raw["FLUX_RADIUS"], float).reshape(len(table), -1)[:, 0]
    table["flux_radius"] = np.where(radius > 0, radius, np.nan)
    flags = map_flags(raw["FLAGS"], SEXTRACTOR_FLAG_MAP) | footprint_flags(
        segmentation, ids, image, mask, nodata, saturation
    )
    table["flags"] = flags.astype(np.int32)
    return DetectionResult(
        objects=table[list(DETECTION_COLUMNS)],
        background=background,
        segmentation=segmentation,
        filtered=filtered,
        engine="sextractor",
    )
