"""The catalogue-based transient search: objects that no catalogue explains.

From the calibrated objects of the photometry step: drop flagged objects, optionally
keep only a cone and only objects seen in other images of the field, cross-match with
Gaia eDR3 / Pan-STARRS DR1 / SkyMapper DR4 through CDS XMatch (a match is kept only when
the object is much brighter than the catalogue star), drop known minor planets (IMCCE
SkyBoT), annotate known variable stars (AAVSO VSX), and write the brightest candidates
as a table (FITS, CSV, VOTable), DS9 regions and one cutout PNG each.

XMatch failing stops the step (:class:`ServiceUnavailable`: the job may retry);
SkyBoT, VSX or the atlas images failing only costs their check, with a warning.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from pydantic import Field, model_validator

from pipeline import cutouts
from pipeline.catalogs.definitions import CATALOGS
from pipeline.catalogs.errors import CatalogError
from pipeline.catalogs.vizier import DEFAULT_TIMEOUT_S, DEFAULT_VIZIER_URL
from pipeline.filters import FILTERS
from pipeline.steps.base import (
    IMAGE_FILE,
    MASK_FILE,
    OBJECTS_FILE,
    WCS_FILE,
    ServiceUnavailable,
    StepConfig,
    StepContext,
    StepError,
    StepResult,
)
from pipeline.targets.config import TargetsConfig
from pipeline.targets.errors import AtlasUnavailable
from pipeline.targets.hips import atlas_survey, atlas_wcs, fetch_atlas
from pipeline.transients import candidates as cand
from pipeline.transients import filtering, xmatch
from pipeline.transients import skybot as skybot_client
from pipeline.transients import vsx as vsx_client
from pipeline.transients.bands import to_ab
from pipeline.transients.matching import nearest_within

SEGMENTATION_FILE = "segmentation.fits"  # written by the photometry step
XMatchCatalog = Literal[xmatch.XMATCH_CATALOGS]  # type: ignore[valid-type]
SECONDS_PER_DAY = 86400.0
MJD_TO_JD = 2400000.5


class TransientsSimpleConfig(StepConfig):
    """Settings of the catalogue-based transient search."""

    keep_shape_outliers: bool = Field(
        False,
        description="Keep objects the shape prefilter flagged as outliers (0x800): "
        "transients on galaxies often are. Other flags (except deblended 0x002 and masked "
        "footprint 0x100) always reject.",
    )
    center: str | None = Field(
        None,
        description="Search only around this position: 'RA Dec' in degrees or "
        "'hh:mm:ss ±dd:mm:ss' (object names once a name resolver is installed).",
    )
    radius_deg: float | None = Field(
        None, gt=0, le=10, description="Radius of the search cone around center, degrees."
    )
    other_tasks: list[int] = Field(
        default_factory=list,
        description="Ids of other tasks of the same field: keep only objects detected in "
        "all of them (their photometry must have run).",
    )
    other_match_fwhm: float = Field(
        0.5, gt=0, le=5, description="Match radius for the other tasks' objects, in FWHM."
    )
    catalogs: list[XMatchCatalog] | None = Field(
        None,
        description="Catalogues to cross-match with. Empty: Gaia eDR3, plus Pan-STARRS DR1 "
        "and SkyMapper DR4 where they cover the field.",
    )
    xmatch_radius_fwhm: float = Field(
        2.0, gt=0, le=20, description="Cross-match radius, in FWHM (at most 180″)."
    )
    mag_diff: float = Field(
        2.0,
        ge=0,
        le=10,
        description="Keep a catalogue match only if the object is brighter than the "
        "catalogue star by more than this (mag). 0 rejects every positional match.",
    )
    median_offset: bool = Field(
        True,
        description="Remove the median object − catalogue difference of each catalogue "
        "(with at least 10 matches) before applying mag_diff.",
    )
    xmatch_url: str = Field(xmatch.DEFAULT_XMATCH_URL, description="CDS XMatch service URL.")
    xmatch_timeout: float = Field(
        xmatch.DEFAULT_XMATCH_TIMEOUT_S, gt=0, le=1800, description="XMatch timeout, seconds."
    )
    skybot: bool = Field(True, description="Check known minor planets with IMCCE SkyBoT.")
    skybot_reject: bool = Field(
        True, description="Reject candidates on a known minor planet (off: only annotate)."
    )
    skybot_radius_arcsec: float = Field(
        10.0, gt=0, le=120, description="Match radius for minor planets, arcsec."
    )
    skybot_location: str = Field(
        skybot_client.GEOCENTRE,
        min_length=1,
        max_length=8,
        description="IAU observatory code for the SkyBoT ephemerides ('500': geocentre).",
    )
    skybot_url: str = Field(skybot_client.DEFAULT_SKYBOT_URL, description="SkyBoT cone-search URL.")
    skybot_timeout: float = Field(
        skybot_client.DEFAULT_SKYBOT_TIMEOUT_S, gt=0, le=600, description="SkyBoT timeout, seconds."
    )
    vsx: bool = Field(True, description="Annotate known variable stars (AAVSO VSX via VizieR).")
    vizier_url: str = Field(DEFAULT_VIZIER_URL, description="VizieR server for VSX.")
    vizier_timeout: float = Field(
        DEFAULT_TIMEOUT_S, gt=0, le=600, description="VizieR timeout, seconds."
    )
    max_candidates: int = Field(
        100, ge=1, le=10000, description="Keep at most this many candidates, brightest first."
    )
    make_cutouts: bool = Field(True, description="Draw a cutout PNG for each candidate.")
    cutout_size: int = Field(61, ge=11, le=401, description="Side of the cutouts, pixels.")
    atlas: bool = Field(
        True,
        description="Add an atlas image (Pan-STARRS or SkyMapper via hips2fits) to the cutouts.",
    )
    hips2fits_url: str = Field(
        TargetsConfig.model_fields["hips2fits_url"].default,
        description="Base URL of the CDS hips2fits service (atlas images).",
    )
    hips2fits_timeout: float = Field(30.0, gt=0, le=300, description="hips2fits timeout, s.")

    @model_validator(mode="after")
    def _cone_complete(self) -> TransientsSimpleConfig:
        if (self.center is None) != (self.radius_deg is None):
            raise ValueError("give both center and radius_deg for a cone search, or neither")
        return self


CONFIG_MODEL = TransientsSimpleConfig


# --- inputs ----------------------------------------------------------------------------


def _load_objects(ctx: StepContext) -> Table:
    path = ctx.path(OBJECTS_FILE)
    if not path.exists():
        raise StepError(f"{OBJECTS_FILE} is missing: run the photometry step first")
    try:
        table = Table.read(path, hdu=1)
    except Exception as exc:  # a damaged file: astropy raises many kinds
        raise StepError(f"{OBJECTS_FILE} cannot be read ({exc}): re-run photometry") from exc
    missing = [c for c in ("x", "y", "ra", "dec", "flags", "mag") if c not in table.colnames]
    if missing:
        raise StepError(f"{OBJECTS_FILE} lacks {', '.join(missing)}: re-run photometry")
    if not np.isfinite(np.asarray(table["ra"], float)).any():
        raise StepError(
            "the objects have no sky positions (no WCS): run photometry with astrometry first"
        )
    return table


def _task_wcs(ctx: StepContext) -> WCS | None:
    for name in (WCS_FILE, IMAGE_FILE):
        if ctx.path(name).exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                try:
                    wcs = WCS(fits.getheader(ctx.path(name)))
                except Exception:  # an unparsable header just means no WCS from it
                    continue
            if wcs.has_celestial:
                return wcs.celestial if name == IMAGE_FILE else wcs
    return None


def _pixel_scale(wcs: WCS | None, inspect: dict[str, Any]) -> float:
    if wcs is not None:
        from astropy.wcs.utils import proj_plane_pixel_scales

        return float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs.celestial))) * 3600.0)
    scale = inspect.get("pixel_scale_arcsec")
    if not scale:
        raise StepError("the pixel scale is unknown (no WCS): run photometry with astrometry")
    return float(scale)


def _fwhm(objects: Table, photometry: dict[str, Any]) -> float:
    for value in (objects.meta.get("FWHM"), photometry.get("fwhm")):
        if value is not None and math.isfinite(float(value)) and float(value) > 0:
            return float(value)
    good = np.asarray(objects["flags"]) == 0
    if "fwhm" in objects.colnames and good.any():
        return float(np.nanmedian(np.asarray(objects["fwhm"], float)[good]))
    raise StepError("the image FWHM is unknown: re-run photometry")


def _epoch_jd(inspect: dict[str, Any]) -> float | None:
    """Julian date of mid-exposure, None when the image time is unknown."""
    mjd = inspect.get("mjd")
    if mjd is None:
        return None
    exposure = inspect.get("exposure") or 0.0
    return float(mjd) + MJD_TO_JD + float(exposure) / 2.0 / SECONDS_PER_DAY


def _other_tables(ctx: StepContext, config: TransientsSimpleConfig) -> list[Table]:
    paths = getattr(ctx, "other_objects", None)  # set by a caller that checked access
    if paths is None:
        paths = [ctx.task_dir.parent / str(i) / OBJECTS_FILE for i in config.other_tasks]
    try:
        return [filtering.read_other_objects(Path(p)) for p in paths]
    except filtering.FilterInputError as exc:
        raise StepError(f"other images: {exc}") from exc


# --- stages ----------------------------------------------------------------------------


class _Search:
    """Indices into the objects table surviving each stage, with the running counts."""

    def __init__(self, objects: Table):
        self.objects = objects
        self.rows = np.arange(len(objects))
        self.counts: dict[str, int] = {"n_objects_in": len(objects)}

    def keep(self, mask: np.ndarray, count_key: str) -> None:
        self.rows = self.rows[np.asarray(mask, bool)]
        self.counts[count_key] = len(self.rows)

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self.objects[name], float)[self.rows]


def _local_filters(ctx, config, search: _Search, fwhm_arcsec: float) -> None:
    search.keep(
        filtering.flag_filter(search.objects["flags"][search.rows], config.keep_shape_outliers),
        "n_after_flags",
    )
    search.keep(
        np.isfinite(search.column("ra")) & np.isfinite(search.column("dec")), "n_after_flags"
    )
    ctx.log.info("%d of %d objects are not flagged", len(search.rows), len(search.objects))
    if config.center is not None:
        try:
            centre = filtering.resolve_centre(config.center)
        except filtering.FilterInputError as exc:
            raise StepError(f"center: {exc}") from exc
        inside = filtering.cone_filter(
            search.column("ra"), search.column("dec"), centre, config.radius_deg
        )
        search.keep(inside, "n_after_cone")
        ctx.log.info(
            "%d objects within %g° of %.5f %+.5f", len(search.rows), config.radius_deg, *centre
        )
    others = _other_tables(ctx, config)
    if others:
        radius = config.other_match_fwhm * fwhm_arcsec
        seen = filtering.seen_in_all(search.column("ra"), search.column("dec"), others, radius)
        search.keep(seen, "n_after_others")
        ctx.log.info(
            "%d objects also detected in the %d other images", len(search.rows), len(others)
        )


def _our_magnitudes(objects: Table, config, warn: list[str]) -> tuple[np.ndarray | None, str]:
    """Calibrated magnitudes on the AB scale and their band, or (None, band)."""
    band = str(objects.meta.get("MAGBAND") or "")
    if "mag_calib" not in objects.colnames:
        if config.mag_diff > 0:
            raise StepError(
                "the objects have no calibrated magnitudes, which the magnitude-difference "
                "test needs: run photometry with calibration first (or set mag_diff to 0 "
                "to reject every catalogue match)"
            )
        warn.append("no calibrated magnitudes: every catalogue match is rejected")
        return None, band
    if band not in FILTERS:
        raise StepError(
            f"{OBJECTS_FILE} does not say which band mag_calib is in (MAGBAND={band!r}): "
            "re-run photometry with calibration"
        )
    system = str(objects.meta.get("MAGSYS") or FILTERS[band].magnitude_system)
    return to_ab(np.asarray(objects["mag_calib"], float), band, system), band


def _cross_match(ctx, config, search: _Search, annotations: dict, fwhm_arcsec: float, warn):
    """XMatch with each catalogue; drops explained objects, records the nearest match."""
    dec_centre = float(np.nanmedian(search.column("dec"))) if len(search.rows) else 0.0
    keys = xmatch.catalogs_for_field(dec_centre, config.catalogs)
    if config.catalogs and not keys:
        warn.append(f"none of {', '.join(config.catalogs)} covers Dec {dec_centre:+.1f}°")
    our_ab, band = _our_magnitudes(search.objects, config, warn)
    radius = min(config.xmatch_radius_fwhm * fwhm_arcsec, xmatch.MAX_XMATCH_RADIUS_ARCSEC)
    client = xmatch.xmatch_client(config.xmatch_url, config.xmatch_timeout)
    details = {}
    for step, key in enumerate(keys):
        if len(search.rows) == 0:
            break
        definition = CATALOGS[key]
        ctx.progress(0.1 + 0.4 * step / len(keys), f"cross-matching with {definition.title}")
        answer = xmatch.query_xmatch(
            client, search.column("ra"), search.column("dec"), definition, radius
        )
        mags = our_ab[search.rows] if our_ab is not None else None
        verdict = xmatch.judge_matches(
            answer, len(search.rows), definition, mags, band, config.mag_diff, config.median_offset
        )
        _record_matches(annotations, search.rows, verdict, key)
        details[key] = {
            "n_pairs": len(answer),
            "n_rejected": int(verdict.rejected.sum()),
            "median_offset": round(verdict.offset, 4),
            "bands": verdict.bands_used,
        }
        search.keep(~verdict.rejected, "n_after_xmatch")
        ctx.log.info(
            "%s: %d pairs within %.2f″, %d objects explained, %d remain (compared in %s)",
            definition.title,
            len(answer),
            radius,
            int(verdict.rejected.sum()),
            len(search.rows),
            ", ".join(verdict.bands_used) or "no band",
        )
    search.counts.setdefault("n_after_xmatch", len(search.rows))
    return keys, details, radius


def _record_matches(annotations: dict, rows: np.ndarray, verdict, key: str) -> None:
    """Keep, per object, the nearest match over all catalogues so far."""
    for i, row in enumerate(rows):
        sep = verdict.sep[i]
        if not np.isfinite(sep):
            continue
        best = annotations.get(row)
        if best is None or sep < best["xmatch_sep"]:
            annotations[row] = {
                "xmatch_catalog": key,
                "xmatch_sep": float(sep),
                "xmatch_dmag": float(verdict.dmag[i]),
                "xmatch_band": verdict.band[i],
            }


def _minor_planets(ctx, config, search: _Search, inspect, warn) -> tuple[bool, list, dict]:
    """SkyBoT check; returns (checked, bodies found, row -> (name, sep) annotations)."""
    if not config.skybot or len(search.rows) == 0:
        if not config.skybot:
            warn.append("the minor-planet check (SkyBoT) is switched off")
        return False, [], {}
    epoch = _epoch_jd(inspect)
    if epoch is None:
        warn.append("the image time is unknown: known minor planets were not checked")
        return False, [], {}
    ra, dec = search.column("ra"), search.column("dec")
    centre_ra, centre_dec, radius = _enclosing_cone(ra, dec)
    ctx.progress(0.55, "checking known minor planets (SkyBoT)")
    try:
        bodies = skybot_client.query_skybot(
            centre_ra,
            centre_dec,
            radius + config.skybot_radius_arcsec / 3600.0,
            epoch,
            url=config.skybot_url,
            timeout=config.skybot_timeout,
            location=config.skybot_location,
        )
    except skybot_client.SkybotError as exc:
        warn.append(f"known minor planets were not checked: {exc}")
        return False, [], {}
    index, sep = nearest_within(ra, dec, bodies.ra, bodies.dec, config.skybot_radius_arcsec)
    hit = index >= 0
    found = [
        {
            "name": str(bodies.name[j]),
            "class": str(bodies.kind[j]),
            "vmag": None if not np.isfinite(bodies.vmag[j]) else round(float(bodies.vmag[j]), 2),
            "ra": round(float(ra[i]), 7),
            "dec": round(float(dec[i]), 7),
            "sep_arcsec": round(float(sep[i]), 2),
        }
        for i, j in zip(np.flatnonzero(hit), index[hit], strict=True)
    ]
    ctx.log.info("SkyBoT: %d bodies in the field, %d on objects", len(bodies), len(found))
    notes = {
        int(search.rows[i]): (str(bodies.name[index[i]]), float(sep[i]))
        for i in np.flatnonzero(hit)
    }
    if config.skybot_reject:
        search.keep(~hit, "n_after_skybot")
    return True, found, notes


def _enclosing_cone(ra: np.ndarray, dec: np.ndarray) -> tuple[float, float, float]:
    """Centre and radius (deg) of a cone holding all positions."""
    from astropy.coordinates import SkyCoord

    points = SkyCoord(ra, dec, unit="deg")
    vector = points.cartesian.xyz.value.mean(axis=1)
    centre = SkyCoord(*vector, representation_type="cartesian").spherical
    middle = SkyCoord(centre.lon, centre.lat)
    return float(middle.ra.deg), float(middle.dec.deg), float(points.separation(middle).deg.max())


def _variables(ctx, config, table: Table, radius_arcsec: float, warn) -> bool:
    """Annotate VSX variables on the final candidates; True when VSX was checked."""
    if not config.vsx or len(table) == 0:
        return False
    ra, dec = np.asarray(table["ra"], float), np.asarray(table["dec"], float)
    centre_ra, centre_dec, radius = _enclosing_cone(ra, dec)
    ctx.progress(0.65, "looking for known variable stars (VSX)")
    try:
        found = vsx_client.query_vsx(
            centre_ra,
            centre_dec,
            radius + radius_arcsec / 3600.0,
            url=config.vizier_url,
            timeout=config.vizier_timeout,
        )
    except (ServiceUnavailable, CatalogError) as exc:
        warn.append(f"known variable stars were not checked: {exc}")
        return False
    index, sep = nearest_within(ra, dec, found.ra, found.dec, radius_arcsec)
    hit = index >= 0
    table["known_variable"] = hit
    table["vsx_name"][hit] = found.name[index[hit]]
    table["vsx_type"][hit] = found.kind[index[hit]]
    table["vsx_range"][hit] = found.range_text[index[hit]]
    table["vsx_sep"][hit] = sep[hit]
    ctx.log.info("VSX: %d variables near the field, %d on candidates", len(found), int(hit.sum()))
    return True


# --- outputs ---------------------------------------------------------------------------


def _read_plane(ctx: StepContext, name: str) -> np.ndarray | None:
    if not ctx.path(name).exists():
        return None
    with fits.open(ctx.path(name)) as hdul:
        for hdu in hdul:
            if hdu.data is not None and hdu.data.ndim == 2:
                return np.asarray(hdu.data)
    return None


def _title(row, inspect: dict[str, Any], band: str, system: str) -> str:
    parts = [str(row["jname"])]
    if "mag_calib" in row.colnames and np.isfinite(row["mag_calib"]):
        error = row["mag_calib_err"] if "mag_calib_err" in row.colnames else np.nan
        parts.append(f"{band} = {row['mag_calib']:.2f} ± {error:.2f} ({system})")
    else:
        parts.append(f"instrumental {row['mag']:.2f}")
    if "magerr" in row.colnames and row["magerr"] > 0:
        parts.append(f"S/N = {1.0 / row['magerr']:.1f}")
    if "mag_limit" in row.colnames and np.isfinite(row["mag_limit"]):
        parts.append(f"limit {row['mag_limit']:.2f}")
    if inspect.get("time"):
        parts.append(str(inspect["time"]))
    notes = []
    if row["known_variable"]:
        notes.append(f"known variable {row['vsx_name']} ({row['vsx_type']})")
    if row["xmatch_catalog"]:
        notes.append(
            f"{row['xmatch_catalog']} match {row['xmatch_sep']:.1f}″, "
            f"Δm = {row['xmatch_dmag']:+.2f}"
        )
    if row["minor_planet"]:
        notes.append(f"minor planet {row['minor_planet']}")
    return "  ".join(parts) + ("\n" + "; ".join(notes) if notes else "")


def _candidate_cutout(row, image, mask, segmentation, wcs, config, band, warn, atlas_ok):
    """The cutout of one candidate (image, atlas, footprint, mask); atlas_ok as updated."""
    size = config.cutout_size
    x, y = float(row["x"]), float(row["y"])
    x0, y0 = cutouts.stamp_origin(x, y, size)
    panels: list = [("image", image, "image", "image", np.nan)]
    if config.atlas and wcs is not None:
        choice = atlas_survey(band, float(row["dec"]))
        atlas = cutouts.CutoutPanel("atlas", None, choice.label, "image", "atlas off")
        if atlas_ok:
            try:
                grid = atlas_wcs(wcs, x, y, x0, y0, size)
                atlas.data = fetch_atlas(
                    choice.hips, grid, url=config.hips2fits_url, timeout=config.hips2fits_timeout
                )
                atlas.note = None
            except AtlasUnavailable as exc:
                warn.append(f"cutouts have no atlas image: {exc}")
                atlas.note = f"atlas unavailable: {exc}"
                atlas_ok = False  # the service is out: do not wait for it once per candidate
        panels.append(atlas)
    if segmentation is not None and "id" in row.colnames:
        segment = cutouts.stamp(segmentation, x0, y0, size, 0) == int(row["id"])
        panels.append(
            cutouts.CutoutPanel("footprint", segment.astype(np.uint8), "footprint", "mask")
        )
    if mask is not None:
        panels.append(("mask", mask, "mask", "mask", 0))
    meta = {"JNAME": str(row["jname"]), "RA": float(row["ra"]), "DEC": float(row["dec"])}
    return cutouts.make_cutout(x, y, size, panels, wcs=wcs, meta=meta), atlas_ok


def _cutouts(ctx, config, table: Table, aperture_px: float, wcs, inspect, files, warn) -> None:
    if not config.make_cutouts or len(table) == 0:
        return
    image = _read_plane(ctx, IMAGE_FILE)
    if image is None:
        warn.append(f"no cutouts: {IMAGE_FILE} cannot be read")
        return
    mask = _read_plane(ctx, MASK_FILE)
    segmentation = _read_plane(ctx, SEGMENTATION_FILE)
    band = str(table.meta.get("MAGBAND") or inspect.get("filter") or "r")
    system = str(table.meta.get("MAGSYS") or "")
    ctx.path(cand.CUTOUT_DIR).mkdir(exist_ok=True)
    atlas_ok = True
    for k, row in enumerate(table):
        ctx.progress(0.7 + 0.28 * k / len(table), f"cutout {k + 1} of {len(table)}")
        cutout, atlas_ok = _candidate_cutout(
            row, image, mask, segmentation, wcs, config, band, warn, atlas_ok
        )
        stem = f"{cand.CUTOUT_DIR}/{row['jname']}"
        centre = cutout.center
        # a reticle twice the aperture frames the source instead of hiding it
        marks = [cutouts.CircleMark(centre[0], centre[1], max(2.0 * aperture_px, 4.0))]
        try:
            cutouts.write_cutout(cutout, ctx.path(stem + ".cutout"))
            files.append(stem + ".cutout")
            cutouts.plot_cutout(
                cutout, ctx.path(stem + ".png"), _title(row, inspect, band, system), marks
            )
            atlas = [("atlas", p.title) for p in cutout.panels if p.name == "atlas"]
            cutouts.write_blink_strip(
                cutout, [("image", "image"), *atlas], ctx.path(stem + cutouts.BLINK_SUFFIX)
            )
        except Exception as exc:  # a failed figure must not lose the candidates
            warn.append(f"the cutout of {row['jname']} could not be drawn: {exc}")
            continue
        table["cutout"][k] = stem + ".png"
        files.extend([stem + ".png", stem + cutouts.BLINK_SUFFIX])


def _summary_number(value: float | None, digits: int = 5) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def run(ctx: StepContext, config: TransientsSimpleConfig) -> StepResult:
    """Find objects no reference catalogue, minor planet or other image explains."""
    warn: list[str] = []
    files: list[str] = []
    ctx.progress(0.0, "reading the objects")
    objects = _load_objects(ctx)
    inspect = ctx.read_result("inspect") or {}
    photometry = ctx.read_result("photometry") or {}
    wcs = _task_wcs(ctx)
    scale = _pixel_scale(wcs, inspect)
    fwhm = _fwhm(objects, photometry)
    fwhm_arcsec = fwhm * scale
    aperture_px = float(objects.meta.get("APERTUR") or photometry.get("aperture_radius") or fwhm)

    search = _Search(objects)
    _local_filters(ctx, config, search, fwhm_arcsec)
    annotations: dict[int, dict] = {}
    keys, details, radius = _cross_match(ctx, config, search, annotations, fwhm_arcsec, warn)
    checked, bodies, body_notes = _minor_planets(ctx, config, search, inspect, warn)

    magnitude = "mag_calib" if "mag_calib" in objects.colnames else "mag"
    order = filtering.brightest_first(search.column(magnitude), config.max_candidates)
    if len(search.rows) > config.max_candidates:
        warn.append(
            f"{len(search.rows)} candidates: only the {config.max_candidates} brightest are kept"
        )
    rows = search.rows[order]
    table = cand.candidate_table(objects, rows)
    for k, row in enumerate(rows):
        for name, value in annotations.get(int(row), {}).items():
            table[name][k] = value
        if int(row) in body_notes:
            table["minor_planet"][k], table["minor_planet_sep"][k] = body_notes[int(row)]
    vsx_checked = _variables(ctx, config, table, radius, warn)
    _cutouts(ctx, config, table, aperture_px, wcs, inspect, files, warn)
    ctx.progress(0.98, "writing the candidates")
    files[:0] = cand.write_candidates(table, ctx.task_dir, aperture_px * scale)
    ctx.log.info("%d candidates written", len(table))
    ctx.progress(1.0, "transient search done")
    summary = {
        **search.counts,
        "n_minor_planets": len(bodies),
        "n_known_variables": int(np.count_nonzero(table["known_variable"])),
        "n_candidates": len(table),
        "catalogs_used": keys,
        "xmatch": details,
        "xmatch_radius_arcsec": _summary_number(radius, 4),
        "mag_diff": config.mag_diff,
        "magnitude_band": str(objects.meta.get("MAGBAND") or ""),
        "skybot_checked": checked,
        "minor_planets": bodies,
        "vsx_checked": vsx_checked,
        "fwhm_arcsec": _summary_number(fwhm_arcsec, 4),
        "candidates": [str(n) for n in table["jname"]],
    }
    return StepResult(summary=summary, files=files, warnings=warn)
