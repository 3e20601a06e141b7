"""Header inspection and checks of the header against the pixels.

:func:`inspect_image` gathers everything later steps need to know about an
image (time, exposure, filter, gain, saturation, data section, pointing, WCS)
from the header via :mod:`pipeline.header`, checks gain and saturation
against the pixel statistics, repairs and checks the WCS via
:mod:`pipeline.wcs_header`, and returns an :class:`Inspection` with a
warning for every doubtful finding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from pipeline import header as hdr
from pipeline.background import BackgroundMaps, estimate_background
from pipeline.filters import FILTER_NAMES, filter_system
from pipeline.fitsio import original_dtype
from pipeline.masking import section_mask
from pipeline.wcs_header import WcsCheck, check_wcs, sanitize_wcs_header

module_log = logging.getLogger("skysift.inspection")

SKY_SUBTRACTED_SIGMAS = 3.0  # sky level within this many sigma of zero counts as subtracted
GAIN_MISMATCH = 3.0  # factor between empirical and stated gain that triggers a correction
SATURATED_FRACTION_WARN = 0.01
PILEUP_MIN_PIXELS = 10
PILEUP_DENSITY_RATIO = 3.0
MIN_VALID_PIXELS = 256
BACKGROUND_MESH = 256  # px; the sky statistics only need a coarse map
_ADC_LIMITS = {"uint16": 65535.0, "int16": 32767.0, "uint8": 255.0}


@dataclass
class Inspection:
    """What inspection found out about one image; ``warnings`` are for the user."""

    shape: tuple[int, int]
    time_iso: str | None = None
    mjd: float | None = None
    time_source: str | None = None
    exposure: float | None = None
    filter_raw: str | None = None
    filter: str | None = None
    filter_system: str | None = None
    gain: float = 1.0
    gain_source: str = "assumed"
    read_noise: float | None = None
    saturation: float | None = None
    saturation_source: str = ""
    telescope: str | None = None
    instrument: str | None = None
    object_name: str | None = None
    binning: list[int] | None = None
    data_section: hdr.Section | None = None
    overscan: hdr.Section | None = None
    ra_hint: float | None = None
    dec_hint: float | None = None
    pointing_source: str | None = None
    wcs: WcsCheck = field(default_factory=WcsCheck)
    wcs_fixes: list[str] = field(default_factory=list)
    wcs_header: fits.Header | None = None
    original_dtype: str = "float32"
    sky_level: float | None = None
    sky_rms: float | None = None
    data_min: float | None = None
    data_max: float | None = None
    sky_subtracted: bool = False
    raw_like: bool = False
    bias_level: float | None = None
    outside: np.ndarray | None = field(default=None, repr=False)
    background: BackgroundMaps | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)
    log: logging.Logger = field(default=module_log, repr=False)

    def warn(self, message: str) -> None:
        """Record a warning for the user and log it."""
        self.warnings.append(message)
        self.log.warning(message)

    def note(self, message: str, *args: object) -> None:
        """Log a finding (not a warning)."""
        self.log.info(message, *args)


class InspectionError(ValueError):
    """The image cannot be processed; the message says why."""


# ------------------------------------------------------------------------ pixels


def estimate_pileup(values: np.ndarray, sky_level: float) -> float | None:
    """Saturation level from a pile-up of pixel values just below the maximum.

    Saturated pixels share (nearly) one value, so the bright end of the
    histogram shows an excess; unsaturated star peaks thin out towards the
    maximum instead. The density of values in the top 2 % of the range
    ``[sky, max]`` is compared with the density in the 8 % below it.

    Returns
    -------
    float or None
        A level just below the pile-up (2nd percentile of the piled-up values),
        or None if there is no pile-up.
    """
    vmax = float(np.max(values))
    span = vmax - sky_level
    if not span > 0:
        return None
    width = 0.02 * span
    bright = values[values >= vmax - 5 * width]
    top = bright[bright >= vmax - width]
    below = bright.size - top.size
    if top.size < PILEUP_MIN_PIXELS:
        return None
    if top.size / width <= PILEUP_DENSITY_RATIO * below / (4 * width):
        return None
    return float(np.percentile(top, 2))


def _bias_from_overscan(data: np.ndarray, overscan: hdr.Section | None) -> float | None:
    if overscan is None:
        return None
    region = data[overscan.slices]
    region = region[np.isfinite(region)]
    return float(np.median(region)) if region.size else None


def _check_gain(result: Inspection, gain: float | None, from_config: bool) -> None:
    """Compare the sky noise with Poisson noise for the gain; correct rescaled images."""
    if gain is None:
        result.gain, result.gain_source = 1.0, "assumed"
        result.warn("no gain keyword (GAIN, EGAIN, ...) in the header: assuming 1 e-/ADU")
    else:
        result.gain = gain
    if result.sky_subtracted or result.sky_level is None or not result.sky_rms:
        return
    level = result.sky_level - (result.bias_level or 0.0)
    if level <= 0:
        return
    empirical = level / result.sky_rms**2  # ignores read noise: a lower bound on the gain
    result.note(
        "sky %.4g ADU above bias with noise %.4g ADU: empirical gain ≥ %.3g e-/ADU",
        level,
        result.sky_rms,
        empirical,
    )
    if empirical > GAIN_MISMATCH * result.gain:
        message = (
            f"the sky noise ({result.sky_rms:.4g} ADU) is far below Poisson noise for a sky "
            f"of {level:.4g} ADU with gain {result.gain:.4g}: the image was probably rescaled "
            "(averaged or normalised stack), or still contains a bias pedestal"
        )
        if from_config:
            result.warn(message + "; keeping the gain you set")
        else:
            result.gain, result.gain_source = float(empirical), "estimated from sky noise"
            result.warn(message + f"; using the effective gain {empirical:.4g} e-/ADU")
    elif empirical * GAIN_MISMATCH < result.gain:
        result.note(
            "sky noise exceeds Poisson noise for gain %.4g: read noise or pattern noise dominates",
            result.gain,
        )


def _check_saturation(
    result: Inspection, values: np.ndarray, saturation: float | None, source: str
) -> None:
    """Check the saturation level against the pixels; estimate it when missing or too high."""
    vmax = float(result.data_max)
    sky = result.sky_level if result.sky_level is not None else float(np.median(values))
    if source == "config":
        result.saturation, result.saturation_source = saturation, "config"
        return
    pileup = None
    if saturation is None or saturation > vmax:
        pileup = estimate_pileup(values, sky)
    if saturation is not None and saturation <= vmax:
        result.saturation, result.saturation_source = saturation, source
        fraction = float(np.count_nonzero(values >= saturation)) / values.size
        if fraction > SATURATED_FRACTION_WARN:
            result.warn(
                f"{100 * fraction:.1f}% of the pixels are at or above the saturation level "
                f"{saturation:.6g} ({source}); check that it is right"
            )
        return
    if pileup is not None:
        result.saturation, result.saturation_source = pileup, "estimated from pixel pile-up"
        if saturation is None:
            result.warn(
                f"no saturation keyword; pixel values pile up near the maximum: "
                f"using {pileup:.6g} ADU"
            )
        else:
            result.warn(
                f"{source} = {saturation:.6g} is above the data maximum {vmax:.6g}, but pixel "
                f"values pile up at {pileup:.6g} (image rescaled or sky-subtracted?): using it"
            )
        return
    if saturation is not None:
        result.saturation, result.saturation_source = saturation, source
        result.note(
            "%s = %.6g is above the data maximum %.6g: no saturated pixels",
            source,
            saturation,
            vmax,
        )
        return
    limit = _ADC_LIMITS.get(result.original_dtype)
    if limit is not None and limit > vmax:
        result.saturation, result.saturation_source = limit, f"{result.original_dtype} limit"
        result.warn(
            f"no saturation keyword and no saturated pixels found: using the "
            f"{result.original_dtype} limit {limit:.0f} ADU"
        )
        return
    result.saturation = vmax + max(abs(vmax) * 1e-6, 1e-6)
    result.saturation_source = "above data maximum"
    result.warn(
        "no saturation keyword and no pile-up of saturated pixels: treating the image as "
        f"unsaturated (level set just above the maximum, {vmax:.6g}); set the saturation "
        "level in the inspection settings if bright stars are saturated"
    )


# ------------------------------------------------------------------------- main


def inspect_image(
    data: np.ndarray,
    header: fits.Header,
    gain: float | None = None,
    saturation: float | None = None,
    filter_name: str | None = None,
    time: str | None = None,
    background_mesh: int = BACKGROUND_MESH,
    log: logging.Logger | None = None,
) -> Inspection:
    """Read the header, check it against the pixels, and report what was found.

    Parameters
    ----------
    data : numpy.ndarray
        The image (float32).
    header : astropy.io.fits.Header
        Its header.
    gain, saturation, filter_name, time : optional
        User overrides; None means "from the header". ``time`` is an ISO
        string, MJD or JD.
    background_mesh : int
        Mesh size of the sky background estimate, pixels.
    log : logging.Logger, optional
        Where findings are logged (the task log); a module logger by default.

    Returns
    -------
    Inspection
        With ``outside`` (pixels outside the data section or in the overscan)
        and ``background`` (sky level and noise maps) filled in.

    Raises
    ------
    InspectionError
        No finite pixel, a constant image, or an override that cannot be understood.
    """
    result = Inspection(shape=(int(data.shape[0]), int(data.shape[1])), log=log or module_log)
    result.original_dtype = original_dtype(header)
    _read_header_facts(result, header, filter_name, time)
    finite = np.isfinite(data)
    if not finite.any():
        raise InspectionError(
            "the image has no finite pixel values (all are NaN or infinite): "
            "upload the processed image, not an empty or failed one"
        )
    result.outside = section_mask(result.shape, result.data_section, result.overscan)
    valid = finite & ~result.outside
    if np.count_nonzero(valid) < MIN_VALID_PIXELS:
        raise InspectionError(
            f"only {np.count_nonzero(valid)} finite pixels inside the data section: "
            "nothing to measure"
        )
    values = data[valid]
    result.data_min, result.data_max = float(values.min()), float(values.max())
    if result.data_max == result.data_min:
        raise InspectionError(
            f"every usable pixel has the same value ({result.data_max:g}): the image holds "
            "no signal"
        )
    result.background = estimate_background(data, bad=~valid, mesh=background_mesh)
    sky_level, sky_rms = result.background.global_level, result.background.global_rms
    result.sky_level, result.sky_rms = float(sky_level), float(sky_rms)
    result.note(
        "sky level %.5g, sky noise %.5g (background mesh %d px)",
        sky_level,
        sky_rms,
        result.background.mesh,
    )
    result.sky_subtracted = abs(sky_level) < SKY_SUBTRACTED_SIGMAS * sky_rms
    _check_raw(result, data)
    if result.sky_subtracted:
        result.warn(
            f"the sky level ({sky_level:.4g}) is close to zero for its noise ({sky_rms:.4g}): "
            "the image looks sky-subtracted, so noise estimates from the gain are unreliable"
        )
    header_gain, gain_key = hdr.read_gain(header)
    if gain is not None:
        result.gain_source = "config"
    elif header_gain is not None:
        result.gain_source = f"header {gain_key}"
    _check_gain(result, gain if gain is not None else header_gain, gain is not None)
    result.read_noise = hdr.read_read_noise(header)[0]
    header_saturation, saturation_key = hdr.read_saturation(header)
    if saturation is not None:
        _check_saturation(result, values, saturation, "config")
    else:
        _check_saturation(result, values, header_saturation, f"header {saturation_key}")
    _inspect_wcs(result, header)
    result.note(
        "gain %.4g (%s), saturation %.6g (%s)",
        result.gain,
        result.gain_source,
        result.saturation,
        result.saturation_source,
    )
    return result


def _read_header_facts(
    result: Inspection, header: fits.Header, filter_name: str | None, time: str | None
) -> None:
    result.exposure, exposure_key = hdr.read_exposure(header)
    if result.exposure is None:
        result.warn("no exposure time (EXPTIME, EXPOSURE, ITIME) in the header")
    result.filter_raw, result.filter, filter_key = hdr.read_filter(header)
    if filter_name is not None:
        if filter_name not in FILTER_NAMES:
            raise InspectionError(f"unknown filter {filter_name!r}; choose one of {FILTER_NAMES}")
        result.filter = filter_name
    elif result.filter_raw is None:
        result.warn("no filter keyword in the header: choose the filter in the settings")
    elif result.filter is None:
        result.warn(
            f"filter {result.filter_raw!r} ({filter_key}) is not a known band: choose the "
            "filter in the settings"
        )
    result.filter_system = filter_system(result.filter) if result.filter else None
    _read_time(result, header, time)
    result.telescope = hdr.read_text(header, ("TELESCOP", "OBSERVAT"))
    result.instrument = hdr.read_text(header, ("INSTRUME", "CAMERA", "DETECTOR"))
    result.object_name = hdr.read_text(header, ("OBJECT", "TARGET", "OBJNAME"))
    result.binning, _ = hdr.read_binning(header)
    result.data_section, section_key, problems = hdr.read_data_section(header, result.shape)
    for problem in problems:
        result.warn(problem)
    if result.data_section is not None and result.data_section.covers(result.shape):
        result.data_section = None  # the whole image: nothing to mask
    result.overscan = hdr.read_overscan(header, result.shape, result.data_section)
    result.ra_hint, result.dec_hint, result.pointing_source = hdr.read_pointing(header)
    result.note(
        "exposure %s s (%s), filter %r -> %s, binning %s, data section %s (%s)",
        result.exposure,
        exposure_key,
        result.filter_raw,
        result.filter,
        result.binning,
        result.data_section.as_fits() if result.data_section else "whole image",
        section_key,
    )


def _read_time(result: Inspection, header: fits.Header, time: str | None) -> None:
    if time is not None:
        parsed = hdr.parse_time_string(time)
        if parsed is None:
            raise InspectionError(
                f"cannot read the time {time!r}: give an ISO date/time "
                "(2023-03-15T03:12:45), an MJD or a JD"
            )
        result.time_iso, result.mjd, result.time_source = (
            parsed.utc.isot,
            float(parsed.utc.mjd),
            "config",
        )
        return
    obs_time, notes = hdr.read_time(header, result.exposure)
    for note in notes:
        result.warn(note)
    if obs_time is None:
        result.warn("no observation time (DATE-OBS, MJD-OBS, JD ...) in the header")
        return
    result.time_iso, result.mjd, result.time_source = obs_time.iso, obs_time.mjd, obs_time.source
    result.note("time %s (MJD %.6f) from %s", obs_time.iso, obs_time.mjd, obs_time.source)


def _check_raw(result: Inspection, data: np.ndarray) -> None:
    """Flag frames that look uncalibrated: overscan still present, 16-bit integers."""
    unsigned16 = result.original_dtype == "uint16"
    if result.overscan is not None:
        result.bias_level = _bias_from_overscan(data, result.overscan)
        result.raw_like = True
        bias = f" (bias ≈ {result.bias_level:.1f} ADU)" if result.bias_level is not None else ""
        result.warn(
            "the frame looks raw: its overscan region (BIASSEC "
            f"{result.overscan.as_fits()}) is still present"
            + (" and pixels are 16-bit integers" if unsigned16 else "")
            + f"{bias}. SkySift expects bias-, dark- and flat-corrected images; photometry "
            "of raw frames is degraded. The overscan and the area outside the data section "
            "are masked"
        )
    elif unsigned16:
        result.note(
            "pixels were stored as 16-bit unsigned integers (typical of raw or "
            "unprocessed frames; calibrated images are usually float)"
        )


def _inspect_wcs(result: Inspection, header: fits.Header) -> None:
    clean, fixes = sanitize_wcs_header(header)
    result.wcs_fixes = fixes
    for fix in fixes:
        result.note("WCS header fix: %s", fix)
    check = check_wcs(clean, result.shape)
    result.wcs = check
    if check.usable:
        result.wcs_header = check.wcs.to_header(relax=True)
        result.note(
            "usable WCS: centre %.5f %+.5f, pixel scale %.4g″",
            check.ra_center,
            check.dec_center,
            check.pixel_scale_arcsec,
        )
        if result.ra_hint is not None:
            offset = (
                SkyCoord(result.ra_hint, result.dec_hint, unit="deg")
                .separation(SkyCoord(check.ra_center, check.dec_center, unit="deg"))
                .deg
            )
            result.note(
                "header pointing %s is %.3f° from the WCS centre", result.pointing_source, offset
            )
        result.ra_hint, result.dec_hint = check.ra_center, check.dec_center
        result.pointing_source = "WCS centre"
    else:
        result.note("no usable WCS: %s", check.reason)
        if result.ra_hint is None:
            result.warn(
                "no usable WCS and no pointing keywords (RA/DEC, OBJCTRA/OBJCTDEC): "
                "blind astrometry will search the whole sky unless you give the field centre"
            )
