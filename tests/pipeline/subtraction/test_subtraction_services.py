"""The optional catalogue (CDS XMatch) and minor-planet (IMCCE SkyBoT) checks of the
subtraction candidates, against local services answering in the real formats.

The catalogue served as Pan-STARRS DR1 is the simulator's (which holds no transient)
plus two objects planted on isolated transients: one brighter than the transient's
flux change (it explains the candidate: a variable star) and one 4 mag fainter (the
candidate outshines it by more than ``mag_diff``: kept, annotated). A known minor
planet is placed on a third transient.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from astropy.table import Table, vstack
from astropy.time import Time

from pipeline.steps import StepContext, run_step
from tests.fixture_servers.skybot import Body, SkybotFixture
from tests.fixture_servers.xmatch import XMatchFixture
from tests.pipeline.subtraction.conftest import SUBTRACTION

PS1 = "II/349/ps1"
MATCH_RADIUS = 1.5  # px


def _planted(catalog: Table, row, r_mag: float) -> Table:
    """One catalogue row moved onto a transient, with its magnitudes set to ``r_mag``."""
    out = catalog[:1].copy()
    out["RAJ2000"], out["DEJ2000"] = row["ra"], row["dec"]
    for band in ("g", "r", "i", "z", "y"):
        out[f"{band}mag"] = r_mag
    return out


@pytest.fixture(scope="module")
def isolated(sky):
    truth = sky.truth.transients
    return truth[~truth["on_galaxy"]]


@pytest.fixture(scope="module")
def services(sky, isolated):
    catalog = vstack(
        [
            sky.catalog,
            _planted(sky.catalog, isolated[0], isolated[0]["mag"] - 1.0),
            _planted(sky.catalog, isolated[1], isolated[1]["mag"] + 4.0),
        ],
        metadata_conflicts="silent",
    )
    xmatch = XMatchFixture({PS1: catalog}).start()
    skybot = SkybotFixture([Body("2023 AB", isolated[2]["ra"], isolated[2]["dec"])]).start()
    yield xmatch, skybot
    xmatch.stop()
    skybot.stop()


def _run(task, tmp_path, config: dict):
    folder = tmp_path / "t"
    shutil.copytree(task.task_dir, folder)
    ctx = StepContext(task_dir=folder, log=logging.getLogger("test.subtraction.services"))
    result = run_step("subtraction", ctx, {**SUBTRACTION, **config})
    return result, Table.read(folder / "candidates.fits")


def _found(candidates: Table, row) -> int | None:
    d = np.hypot(candidates["x"] - row["x"], candidates["y"] - row["y"])
    return int(np.argmin(d)) if len(d) and d.min() < MATCH_RADIUS else None


def _service_config(services) -> dict:
    xmatch, skybot = services
    return {
        "filter_catalogs": True,
        "catalogs": ["ps1"],
        "xmatch_url": xmatch.sync_url,
        "xmatch_timeout": 10.0,
        "skybot": True,
        "skybot_url": skybot.conesearch_url,
        "skybot_timeout": 10.0,
    }


def test_catalogue_and_minor_planets_reject_what_they_explain(
    task, sky, isolated, services, tmp_path
):
    xmatch, skybot = services
    xmatch.reset()
    skybot.reset()
    skybot.requested_epochs.clear()
    result, candidates = _run(task, tmp_path, _service_config(services))
    summary = result.summary
    assert summary["catalogs_checked"] and summary["catalogs_used"] == ["ps1"]
    assert summary["skybot_checked"] and summary["n_minor_planets"] == 1
    assert summary["n_catalog_rejected"] == 1
    assert _found(candidates, isolated[0]) is None  # the brighter catalogue star explains it
    assert _found(candidates, isolated[2]) is None  # a known minor planet
    kept = _found(candidates, isolated[1])
    assert kept is not None
    assert candidates["xmatch_catalog"][kept] == "ps1"
    assert candidates["xmatch_dmag"][kept] == pytest.approx(-4.0, abs=0.3)
    assert candidates["xmatch_sep"][kept] < 0.5
    # every other transient stays a candidate
    others = [row for row in sky.truth.transients if row["x"] not in isolated["x"][:3]]
    assert all(_found(candidates, row) is not None for row in others)
    # XMatch was sent the candidates; SkyBoT was asked at mid-exposure
    assert len(xmatch.uploads) == 1 and len(xmatch.uploads[0]) == summary["n_candidates"] + 2
    mid = Time(sky.header["DATE-OBS"], scale="utc").jd + sky.header["EXPTIME"] / 2 / 86400
    assert skybot.requested_epochs == [pytest.approx(mid, abs=1e-5)]


def test_a_failing_service_only_warns(task, isolated, services, tmp_path):
    """Both checks are optional: with the services failing the candidates stay, and the
    warnings say what was not checked (off by default: see test_subtraction_step)."""
    xmatch, skybot = services
    xmatch.mode = "error"
    skybot.mode = "down"
    try:
        result, candidates = _run(task, tmp_path, _service_config(services))
    finally:
        xmatch.reset()
        skybot.reset()
    assert not result.summary["catalogs_checked"] and not result.summary["skybot_checked"]
    assert any("Pan-STARRS" in w for w in result.warnings)
    assert any("minor planets were not checked" in w for w in result.warnings)
    assert _found(candidates, isolated[0]) is not None
    assert _found(candidates, isolated[2]) is not None
