"""One call from an object list to a checked astrometric solution.

:func:`solve_astrometry` decides what to do from the header and the config:
a usable header WCS is refined against the catalogue (built-in method or
SCAMP); without one (or when asked) the field is first solved blindly —
locally with ``solve-field`` (index files built from the catalogue, the
system and a configured folder) or through nova.astrometry.net — the blind
solution is checked against the catalogue, and then refined the same way.
The final solution must pass :func:`pipeline.astrometry.quality.require_quality`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from pipeline.astrometry.blind import BlindHints, run_solve_field
from pipeline.astrometry.config import AstrometryConfig
from pipeline.astrometry.errors import AstrometryError, PoorSolutionError
from pipeline.astrometry.indexes import (
    build_catalog_indexes,
    catalog_extent_arcmin,
    find_index_files,
    index_scales,
)
from pipeline.astrometry.nova import NovaSettings, solve_with_nova
from pipeline.astrometry.quality import check_solution, require_quality
from pipeline.astrometry.refine import RefineSettings, matches_for_wcs, refine_wcs
from pipeline.astrometry.scamp import ScampSettings, refine_with_scamp
from pipeline.astrometry.solution import AstrometrySolution
from pipeline.astrometry.sources import (
    pixel_scale_deg,
    project_to_pixels,
    reference_stars,
    select_detections,
)
from pipeline.header import read_pointing, to_float
from pipeline.wcs_header import check_wcs, sanitize_wcs_header

log = logging.getLogger("skysift.astrometry")

# Header keywords holding the pixel scale in arcsec/pixel, most common first.
PIXEL_SCALE_KEYS = ("PIXSCALE", "SECPIX", "PIXSCAL1", "SECPIX1", "SCALE", "PLATESCL")
BLIND_CHECK_RADIUS_PX = 5.0  # solve-field's order-2 tweak may leave a few pixels at the corners


def header_pixel_scale(header: fits.Header) -> float | None:
    """Pixel scale (arcsec/pixel) from the usual header keywords, or None."""
    for key in PIXEL_SCALE_KEYS:
        value = to_float(header.get(key)) if key in header else None
        if value is not None and 0.01 < value < 100:
            return value
    return None


def blind_hints(
    header: fits.Header, shape: tuple[int, int], config: AstrometryConfig, wcs: WCS | None
) -> BlindHints:
    """Position and scale hints: the config first, then the header (WCS or pointing)."""
    ra, dec = config.blind_ra, config.blind_dec
    if ra is None or dec is None:
        ra, dec, _ = read_pointing(header)
    if (ra is None or dec is None) and wcs is not None:
        ny, nx = shape
        sky = wcs.all_pix2world([[(nx - 1) / 2.0, (ny - 1) / 2.0]], 0)[0]
        ra, dec = float(sky[0]), float(sky[1])
    scale = config.pixel_scale_hint or header_pixel_scale(header)
    if scale is None and wcs is not None:
        scale = pixel_scale_deg(wcs, shape) * 3600.0
    low = high = None
    if scale is not None:
        low = scale * (1.0 - config.pixel_scale_tolerance)
        high = scale * (1.0 + config.pixel_scale_tolerance)
    return BlindHints(ra, dec, config.blind_radius_deg if ra is not None else None, low, high)


def _local_indexes(
    catalog: Table, shape: tuple[int, int], hints: BlindHints, config: AstrometryConfig
) -> tuple[list[Path], list[Path]]:
    """Index files built from the catalogue, and folders holding other index files."""
    files: list[Path] = []
    if config.build_indexes and catalog is not None and len(catalog):
        refs = reference_stars(catalog, config.astrometry_mag_column or None)
        if hints.has_scale:
            width_low = hints.scale_low * min(shape) / 60.0
            width_high = hints.scale_high * max(shape) / 60.0
        else:  # the catalogue was queried around the field, so its size bounds the field's
            extent = catalog_extent_arcmin(refs)
            width_low, width_high = extent / 4.0, extent
        files = build_catalog_indexes(
            refs, index_scales(width_low, width_high), config.index_cache_dir or None
        )
    dirs: list[Path] = []
    if config.use_system_indexes:
        extra = [config.index_dir] if config.index_dir else []
        dirs = sorted({path.parent for path in find_index_files(extra)})
    return files, dirs


def blind_solve(
    objects: Table,
    catalog: Table | None,
    header: fits.Header,
    shape: tuple[int, int],
    config: AstrometryConfig,
    *,
    approximate: WCS | None = None,
    work_dir: Path | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[WCS, dict]:
    """Blind solution (local ``solve-field`` or nova) of the field, before any check."""
    hints = blind_hints(header, shape, config, approximate)
    detections = select_detections(objects)
    log.info("blind solving with %s (%s)", config.blind_solver, hints.describe())
    if config.blind_solver == "nova":
        settings = NovaSettings(
            api_key=config.nova_api_key,
            base_url=config.nova_url,
            timeout_s=config.nova_timeout_s,
            poll_interval_s=config.nova_poll_s,
            max_wait_s=config.nova_max_wait_s,
        )
        wcs, details = solve_with_nova(detections, shape, settings, hints, cancelled=cancelled)
        return wcs, {"blind_solver": "nova", "blind_hints": hints.describe(), **details}
    files, dirs = _local_indexes(catalog, shape, hints, config)
    result = run_solve_field(
        detections,
        shape,
        index_files=files,
        index_dirs=dirs,
        hints=hints,
        cpu_limit_s=config.blind_time_limit_s,
        work_dir=work_dir,
        cancelled=cancelled,
    )
    details = {
        "blind_solver": "solve-field",
        "blind_hints": hints.describe(),
        "blind_seconds": round(result.seconds, 2),
        "blind_index": result.index,
        "blind_runs": result.runs,
    }
    return result.wcs, details


def _refine(objects, catalog, wcs, shape, config: AstrometryConfig, work_dir):
    mag_column = config.astrometry_mag_column or None
    if config.astrometry_method == "scamp":
        settings = ScampSettings(
            distort_degree=config.sip_order,
            max_offset_arcsec=config.max_offset_arcsec,
            max_rotation_deg=config.max_rotation_deg,
            max_scale_error=config.max_scale_error,
            max_stars=config.astrometry_max_stars,
            mag_column=mag_column,
        )
        return refine_with_scamp(objects, catalog, wcs, shape, settings, work_dir=work_dir)
    if config.astrometry_method == "none":
        det = select_detections(objects, config.astrometry_max_stars)
        refs, _, _ = project_to_pixels(reference_stars(catalog, mag_column), wcs, shape, 0.0)
        return matches_for_wcs(wcs, det, refs, shape, radius_px=BLIND_CHECK_RADIUS_PX)
    settings = RefineSettings(
        sip_order=config.sip_order,
        max_offset_arcsec=config.max_offset_arcsec,
        max_rotation_deg=config.max_rotation_deg,
        max_scale_error=config.max_scale_error,
        tolerance_px=config.match_tolerance_px,
        max_stars=config.astrometry_max_stars,
        min_matches=config.min_matches,
        mag_column=mag_column,
    )
    return refine_wcs(objects, catalog, wcs, shape, settings)


def solve_astrometry(
    objects: Table,
    catalog: Table,
    header: fits.Header,
    shape: tuple[int, int],
    config: AstrometryConfig | None = None,
    *,
    work_dir: Path | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> AstrometrySolution:
    """Find, refine and check the WCS of an image from its object list.

    Parameters
    ----------
    objects : astropy.table.Table
        Measured objects: 0-based ``x``, ``y``, ``flux`` (or ``mag``), ``flags``.
    catalog : astropy.table.Table
        Reference catalogue (``RAJ2000``/``DEJ2000`` and magnitudes, e.g. PS1 ``rmag``).
    header : astropy.io.fits.Header
        Image header: its WCS (if usable) is the starting point; RA/DEC and
        pixel-scale keywords become blind-solving hints.
    shape : (ny, nx)
        Image shape.
    config : AstrometryConfig, optional
    work_dir : Path, optional
        Scratch folder for external programs (temporary sub-folders are removed).
    cancelled : callable, optional
        Polled during blind solving; True stops it.

    Returns
    -------
    AstrometrySolution
        ``method`` says what was done, e.g. ``"builtin"`` or ``"solve-field + builtin"``.

    Raises
    ------
    AstrometryError
        (and its subclasses) with a message for the user when no trustworthy
        solution is found.
    """
    config = config or AstrometryConfig()
    started = time.perf_counter()
    clean, fixes = sanitize_wcs_header(header)
    checked = check_wcs(clean, shape)
    approximate = checked.wcs if checked.usable else None
    details: dict = {}
    prefix = ""
    if config.blind_solve == "always" or (config.blind_solve == "auto" and approximate is None):
        blind_wcs, details = blind_solve(
            objects,
            catalog,
            header,
            shape,
            config,
            approximate=approximate,
            work_dir=work_dir,
            cancelled=cancelled,
        )
        report = check_solution(
            blind_wcs,
            objects,
            catalog,
            shape,
            radius_px=BLIND_CHECK_RADIUS_PX,
            min_matches=config.min_matches,
            mag_column=config.astrometry_mag_column or None,
        )
        if not report.accepted:
            raise PoorSolutionError(f"the blind solution was rejected: {report.reason}")
        details["blind_matches"] = report.n_matches
        approximate = blind_wcs
        prefix = f"{details['blind_solver']} + "
    elif approximate is None:
        raise AstrometryError(
            f"the image header has no usable WCS ({checked.reason}) and blind solving is off: "
            "set blind_solve to auto, or upload an image with a WCS"
        )
    solution = _refine(objects, catalog, approximate, shape, config, work_dir)
    require_quality(
        solution,
        min_matches=config.min_matches,
        max_rms_px=config.max_rms_px if config.astrometry_method != "none" else None,
    )
    solution.method = prefix + ("header" if config.astrometry_method == "none" else solution.method)
    solution.details.update(details)
    solution.details["total_seconds"] = round(time.perf_counter() - started, 3)
    if fixes:
        solution.warnings.append("header WCS repaired: " + "; ".join(fixes))
    return solution
