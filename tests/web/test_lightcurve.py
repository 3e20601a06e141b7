"""Light curves across tasks: forced photometry at a position in every visible covering task."""

from __future__ import annotations

import shutil

import pytest
from astropy.table import Table

from pipeline.simulate import simulate_sky
from pipeline.steps import StepContext, run_step
from tests.conftest import make_user, start_session
from tests.web.test_tasks import fits_bytes, upload


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """A simulated sky taken through inspection and calibrated photometry, once."""
    from astropy.io import fits

    folder = tmp_path_factory.mktemp("processed")
    sky = simulate_sky(size=512, seed=11)
    fits.PrimaryHDU(sky.image, sky.header).writeto(folder / "image.fits")
    sky.catalog.write(folder / "catalog.fits")
    ctx = StepContext(task_dir=folder)
    run_step("inspect", ctx)
    run_step(
        "photometry", ctx, {"catalog": "ps1", "catalog_file": "catalog.fits", "make_plots": False}
    )
    return sky, folder


def adopt(client, settings, folder) -> int:
    """A task of this portal holding the processed folder (as if its steps had run here)."""
    from jobs.db import session_scope
    from jobs.footprints import store_footprint
    from jobs.models import RunState, StepRun

    task_id = upload(client, fits_bytes()).json()["id"]
    target = settings.tasks_dir / str(task_id)
    shutil.rmtree(target)
    shutil.copytree(folder, target)
    with session_scope() as session:
        session.add(StepRun(task_id=task_id, step="photometry", state=RunState.DONE))
        store_footprint(session, task_id)  # what the runner does when photometry finishes
    return task_id


def test_lightcurve_measures_the_position_in_each_covering_task(client, settings, processed):
    sky, folder = processed
    star = sky.truth.transients[~sky.truth.transients["on_galaxy"]][0]
    first, second = adopt(client, settings, folder), adopt(client, settings, folder)
    page = client.get(f"/lightcurve?ra={star['ra']}&dec={star['dec']}")
    assert page.status_code == 200 and "<svg" in page.text
    # every point links to the stamps of its task at the position, in the plot and the table
    stamp = f"/tasks/{first}/position.png?ra={float(star['ra'])!r}&amp;dec={float(star['dec'])!r}"
    assert page.text.count(stamp) >= 2, "the point's marker and row link to its cutout"
    png = client.get(stamp.replace("&amp;", "&"))
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert client.get(f"/tasks/{first}/position.png?ra=10&dec=-60").status_code == 404
    response = client.get(f"/lightcurve?ra={star['ra']}&dec={star['dec']}&format=csv")
    assert response.status_code == 200
    csv = response.text
    table = Table.read(csv, format="ascii.csv")
    assert sorted(set(table["task_id"])) == [first, second]
    direct = table[table["kind"] == "direct"]
    # a transient of g-r = 0 calibrated for the median colour: 3σ + 0.05 mag
    assert all(abs(direct["mag"] - star["mag"]) < 3 * direct["mag_err"] + 0.05)
    empty = client.get("/lightcurve?ra=10&dec=-60&format=csv").text
    assert len(Table.read(empty, format="ascii.csv")) == 0
    assert client.get("/lightcurve?ra=400&dec=0").status_code == 400

    make_user("outsider")
    start_session(client, "outsider")
    hidden = client.get(f"/lightcurve?ra={star['ra']}&dec={star['dec']}&format=csv").text
    assert len(Table.read(hidden, format="ascii.csv")) == 0  # tasks it may not see are skipped
    assert client.get(stamp.replace("&amp;", "&")).status_code == 404


def test_task_list_finds_tasks_covering_a_position(client, settings, processed):
    sky, folder = processed
    covering = adopt(client, settings, folder)
    elsewhere = upload(client, fits_bytes()).json()["id"]  # no astrometry: no footprint
    star = sky.truth.transients[0]
    page = client.get("/tasks/", params={"q": f"at:{star['ra']:.5f},{star['dec']:+.5f}"})
    assert page.status_code == 200
    assert f'href="/tasks/{covering}"' in page.text
    assert f'href="/tasks/{elsewhere}"' not in page.text
    away = client.get("/tasks/", params={"q": f"at:{star['ra'] + 1:.5f},{star['dec']:+.5f}"})
    assert f'href="/tasks/{covering}"' not in away.text
    assert client.get("/tasks/?q=at:400,0").status_code == 400
