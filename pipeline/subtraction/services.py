"""Optional checks of subtraction candidates against catalogues and minor planets.

* Catalogues: the candidates are cross-matched with Gaia eDR3, Pan-STARRS DR1 and
  SkyMapper DR4 (as the sky position allows) through CDS XMatch; a catalogue object
  within the radius that is not fainter than the candidate's flux change by more than
  ``mag_diff`` explains it (a variable or a residual of a known star). Off by default:
  it also rejects transients on catalogued galaxies.
* Minor planets: one IMCCE SkyBoT cone over the image at mid-exposure; a candidate on a
  known body is annotated and, with ``skybot_reject``, rejected.

Both reuse the clients of the catalogue-based search (:mod:`pipeline.transients`). A
failing service only costs its check, with a warning: the candidates stay.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from pipeline.calibration.result import CalibrationResult
from pipeline.catalogs.definitions import CATALOGS
from pipeline.steps.base import StepContext, StepError
from pipeline.transients import skybot as skybot_client
from pipeline.transients import xmatch
from pipeline.transients.bands import to_ab
from pipeline.transients.matching import nearest_within

MJD_TO_JD = 2400000.5
SECONDS_PER_DAY = 86400.0


def service_checks(
    ctx: StepContext,
    config,
    table: Table,
    wcs: WCS,
    fwhm: float,
    calib: CalibrationResult | None,
    inspect: dict,
    shape: tuple[int, int],
    summary: dict,
    warn: list[str],
) -> Table:
    """The candidates of ``table`` that no catalogue object or minor planet explains.

    Adds the annotation columns (``in_catalog``, ``xmatch_catalog``, ``xmatch_sep``,
    ``xmatch_dmag``, ``minor_planet``, ``minor_planet_sep``) whether or not the checks
    run, and their counts to ``summary``. ``config`` is the subtraction step's settings
    (``filter_catalogs``, ``catalogs``, ``xmatch_*``, ``mag_diff``, ``skybot*``).
    """
    radius = min(
        config.xmatch_radius_fwhm * fwhm * _pixel_scale_arcsec(wcs),
        xmatch.MAX_XMATCH_RADIUS_ARCSEC,
    )
    _catalogue_check(ctx, config, table, radius, calib, summary, warn)
    _minor_planet_check(ctx, config, table, wcs, shape, inspect, summary, warn)
    keep = ~np.asarray(table["in_catalog"], bool)
    if config.skybot_reject:
        keep &= np.asarray(table["minor_planet"]) == ""
    summary["n_catalog_rejected"] = int(np.sum(table["in_catalog"]))
    return table[keep]


def _pixel_scale_arcsec(wcs: WCS) -> float:
    return float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs))) * 3600.0)


def _catalogue_check(ctx, config, table: Table, radius: float, calib, summary, warn) -> None:
    """XMatch the candidates; mark the ones a catalogue object explains (``in_catalog``)."""
    n = len(table)
    table["in_catalog"] = np.zeros(n, bool)
    table["xmatch_catalog"] = np.full(n, "", dtype="U16")
    table["xmatch_sep"] = np.full(n, np.nan)
    table["xmatch_dmag"] = np.full(n, np.nan)
    summary["catalogs_checked"] = False
    if not config.filter_catalogs or n == 0:
        return
    ra, dec = np.asarray(table["ra"], float), np.asarray(table["dec"], float)
    keys = xmatch.catalogs_for_field(float(np.median(dec)), config.catalogs)
    band, ours = "", None
    if calib is not None:  # the flux change, calibrated, on the AB scale
        meta = calib.model.metadata()
        band = str(meta["MAGBAND"])
        ours = to_ab(np.asarray(table["mag_calib"], float), band, meta["MAGSYS"] or None)
    client = xmatch.xmatch_client(config.xmatch_url, config.xmatch_timeout)
    for key in keys:
        definition = CATALOGS[key]
        try:
            answer = xmatch.query_xmatch(client, ra, dec, definition, radius)
        except StepError as exc:  # an optional check: the candidates stay, with a warning
            warn.append(f"candidates not checked against {definition.title}: {exc}")
            return
        # no median offset: a difference flux has no zero-point shift against the catalogue
        verdict = xmatch.judge_matches(answer, n, definition, ours, band, config.mag_diff, False)
        # the nearest match over all catalogues is the one recorded (NaN: none yet)
        closer = np.isfinite(verdict.sep) & ~(verdict.sep >= table["xmatch_sep"])
        table["xmatch_catalog"][closer] = key
        table["xmatch_sep"][closer] = verdict.sep[closer]
        table["xmatch_dmag"][closer] = verdict.dmag[closer]
        table["in_catalog"] |= verdict.rejected
        ctx.log.info("%s explains %d of %d candidates", definition.title, verdict.rejected.sum(), n)
    summary.update(catalogs_checked=True, catalogs_used=keys)


def _epoch_jd(inspect: dict) -> float | None:
    """Julian date of mid-exposure, None when the image time is unknown."""
    if inspect.get("mjd") is None:
        return None
    exposure = float(inspect.get("exposure") or 0.0)
    return float(inspect["mjd"]) + MJD_TO_JD + exposure / 2.0 / SECONDS_PER_DAY


def _minor_planet_check(ctx, config, table: Table, wcs, shape, inspect, summary, warn) -> None:
    """SkyBoT cone over the image; mark candidates on a known body (``minor_planet``)."""
    n = len(table)
    table["minor_planet"] = np.full(n, "", dtype="U32")
    table["minor_planet_sep"] = np.full(n, np.nan)
    summary["skybot_checked"] = False
    if not config.skybot or n == 0:
        return
    epoch = _epoch_jd(inspect)
    if epoch is None:
        warn.append("the image time is unknown: known minor planets were not checked")
        return
    ny, nx = shape
    ra0, dec0 = wcs.all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0)
    radius = math.hypot(nx, ny) / 2 * _pixel_scale_arcsec(wcs) + config.skybot_radius_arcsec
    try:
        bodies = skybot_client.query_skybot(
            float(ra0),
            float(dec0),
            min(radius / 3600.0, skybot_client.MAX_CONE_DEG),
            epoch,
            url=config.skybot_url,
            timeout=config.skybot_timeout,
            location=config.skybot_location,
        )
    except skybot_client.SkybotError as exc:
        warn.append(f"known minor planets were not checked: {exc}")
        return
    ra, dec = np.asarray(table["ra"], float), np.asarray(table["dec"], float)
    index, sep = nearest_within(ra, dec, bodies.ra, bodies.dec, config.skybot_radius_arcsec)
    hit = index >= 0
    table["minor_planet"][hit] = bodies.name[index[hit]]
    table["minor_planet_sep"][hit] = sep[hit]
    summary.update(skybot_checked=True, n_minor_planets=int(hit.sum()))
    ctx.log.info("SkyBoT: %d bodies in the field, %d on candidates", len(bodies), hit.sum())
