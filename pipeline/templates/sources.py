"""One entry point for every template source: :func:`get_template`.

Returns the template reprojected onto the image grid with its bad-pixel mask, the
gain and saturation to use for it, and a description for the user.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from pydantic import Field

from pipeline.fitsio import FitsInputError, load_image
from pipeline.steps.base import StepConfig
from pipeline.templates import surveys
from pipeline.templates.bands import HIPS_SURVEYS, choose_band
from pipeline.templates.errors import TemplateError
from pipeline.templates.reprojection import reproject_template

CUSTOM_TEMPLATE_FILE = "custom_template.fits"
CUSTOM_TEMPLATE_MASK_FILE = "custom_template_mask.fits"
SOURCES = ("custom", "ps1", "ls", *HIPS_SURVEYS)
COVERAGE_MARGIN = 1.1  # cutouts are this much wider than the image diagonal needs


class TemplateSettings(StepConfig):
    """Where the template comes from (part of the subtraction step config)."""

    template: Literal["custom", "ps1", "ls", "skymapper", "des", "decaps", "ztf", "2mass"] = Field(
        "custom",
        description="Template source: the uploaded custom_template.fits, Pan-STARRS (ps1), "
        "Legacy Survey (ls) or a HiPS survey through hips2fits.",
    )
    template_band: str | None = Field(
        None, description="Template band; empty: chosen from the image filter."
    )
    template_gain: float = Field(
        10000.0, gt=0, description="Template gain, e-/ADU (large: noise-free template)."
    )
    template_saturation: float | None = Field(
        None, gt=0, description="Template saturation level, ADU; empty: none."
    )
    reprojection: Literal["interp", "adaptive"] = Field(
        "interp", description="Reprojection: bilinear interpolation or adaptive resampling."
    )
    template_timeout: float = Field(
        60.0, gt=0, le=600, description="Timeout of template service requests, seconds."
    )
    template_max_size: int = Field(
        3000, ge=64, le=10000, description="Largest survey cutout side requested, pixels."
    )
    ps1_url: str = Field(
        "https://ps1images.stsci.edu", description="Base URL of the Pan-STARRS image server."
    )
    legacy_url: str = Field(
        "https://www.legacysurvey.org/viewer", description="Base URL of the Legacy Survey viewer."
    )
    legacy_layer: str = Field("ls-dr10", description="Legacy Survey viewer layer.")
    hips2fits_url: str = Field(
        "https://alasky.cds.unistra.fr/hips-image-services/hips2fits",
        description="URL of the CDS hips2fits service.",
    )


@dataclass
class Template:
    """A template on the image grid."""

    data: np.ndarray
    bad: np.ndarray
    gain: float
    saturation: float | None
    band: str | None
    description: str
    warnings: list[str] = field(default_factory=list)


def _custom(task_dir: Path) -> tuple[np.ndarray, fits.Header, np.ndarray | None]:
    path = task_dir / CUSTOM_TEMPLATE_FILE
    if not path.exists():
        raise TemplateError(
            "no template was uploaded (custom_template.fits is missing): upload one or choose "
            "a survey template source"
        )
    try:
        data, header = load_image(path)
    except FitsInputError as exc:
        raise TemplateError(f"the uploaded template cannot be read: {exc}") from exc
    mask = None
    mask_path = task_dir / CUSTOM_TEMPLATE_MASK_FILE
    if mask_path.exists():
        mask = fits.getdata(mask_path)
        if mask.shape != data.shape:
            raise TemplateError(
                f"the template mask has shape {mask.shape} but the template {data.shape}: "
                "draw the template mask again"
            )
    return data, header, mask


def _footprint(wcs: WCS, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """Centre (deg), cutout width needed (arcsec) and pixel scale (arcsec) of the image."""
    ny, nx = shape
    ra, dec = wcs.all_pix2world([(nx - 1) / 2], [(ny - 1) / 2], 0)
    scale = float(np.mean(proj_plane_pixel_scales(wcs))) * 3600
    width = float(np.hypot(nx, ny)) * scale * COVERAGE_MARGIN
    return float(ra[0]), float(dec[0]), width, scale


def get_template(
    config: TemplateSettings,
    task_dir: Path,
    image_wcs: WCS,
    shape: tuple[int, int],
    image_filter: str | None,
    cache_dir: Path | None = None,
) -> Template:
    """The template of ``config.template`` reprojected onto the image grid."""
    warn: list[str] = []
    source = config.template
    band: str | None = config.template_band
    gain, saturation = config.template_gain, config.template_saturation
    if source == "custom":
        data, header, mask = _custom(task_dir)
        description = "uploaded template"
    else:
        band = choose_band(image_filter, source, config.template_band)
        ra, dec, width, scale = _footprint(image_wcs, shape)
        timeout = config.template_timeout
        if source == "ps1":
            data, header, mask = surveys.fetch_ps1(
                config.ps1_url, ra, dec, width, band, timeout, cache_dir
            )
            description = f"Pan-STARRS DR2 {band} stack"
        elif source == "ls":
            data, header, mask = surveys.fetch_legacy(
                config.legacy_url,
                config.legacy_layer,
                ra,
                dec,
                width,
                band,
                timeout,
                config.template_max_size,
                cache_dir,
            )
            description = f"Legacy Survey {config.legacy_layer} {band}"
        else:
            hips = HIPS_SURVEYS[source][band]
            data, header, mask = surveys.fetch_hips(
                config.hips2fits_url,
                hips,
                ra,
                dec,
                width,
                scale,
                timeout,
                config.template_max_size,
                cache_dir,
            )
            description = f"{hips} (hips2fits)"
            warn.append("HiPS templates carry no mask except blank pixels")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, bad = reproject_template(data, header, mask, image_wcs, shape, config.reprojection)
    if saturation is not None:
        bad |= data >= saturation
    coverage = 1.0 - float(bad.mean())
    if coverage < 0.9:
        warn.append(f"the template covers only {100 * coverage:.0f} % of the image")
    return Template(data, bad, gain, saturation, band, description, warn)
