"""A robotic telescope's whole task through the API with a token: upload, inputs, steps,
candidates, downloads — offline (local catalogue and template)."""

from __future__ import annotations

import io
import time

import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

from pipeline.simulate import simulate_sky, write_simulation


def wait(client, headers, task_id, step, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/tasks/{task_id}", headers=headers).json()["steps"].get(step)
        if run and run["state"] not in ("queued", "running"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"{step} did not finish")


def test_full_task_with_a_token(client, api, tmp_path):
    sky = simulate_sky(size=1024, seed=5)
    paths = write_simulation(sky, tmp_path / "sky")
    client.cookies.clear()  # the robot has only its token
    headers = {**api, "accept": "application/json"}
    created = client.post(
        "/api/tasks",
        content=paths["image"].read_bytes(),
        headers={**headers, "x-filename": "robot.fits"},
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    for name, path in (
        ("catalog.fits", paths["catalog"]),
        ("custom_template.fits", paths["template"]),
    ):
        added = client.post(
            f"/api/tasks/{task_id}/files/{name}",
            content=path.read_bytes(),
            headers={**headers, "x-filename": name},
        )
        assert added.status_code == 201, added.text
    refused = client.post(
        f"/api/tasks/{task_id}/files/image.fits",
        content=b"x",
        headers={**headers, "x-filename": "image.fits"},
    )
    assert refused.status_code == 400
    configs = {
        "inspect": {},
        "photometry": {"catalog": "ps1", "catalog_file": "catalog.fits"},
        "subtraction": {"template": "custom"},
    }
    for step, config in configs.items():
        queued = client.post(f"/api/tasks/{task_id}/steps/{step}", json=config, headers=headers)
        assert queued.status_code == 201, queued.text
        run = wait(client, headers, task_id, step)
        assert run["state"] == "done", (step, run["error"])
    candidates = client.get(f"/api/tasks/{task_id}/candidates/subtraction", headers=headers).json()
    truth = sky.truth.transients[~sky.truth.transients["on_galaxy"]]
    found = SkyCoord([c["ra"] for c in candidates], [c["dec"] for c in candidates], unit="deg")
    for transient in truth:
        separation = SkyCoord(transient["ra"], transient["dec"], unit="deg").separation(found)
        assert separation.arcsec.min() < 2.0, (
            f"isolated transient at {transient['x']:.0f},{transient['y']:.0f} missed"
        )
    listed = {f["name"] for f in client.get(f"/api/tasks/{task_id}/files", headers=headers).json()}
    assert {"objects.fits", "candidates.fits", "sub_diff.fits"} <= listed
    download = client.get(f"/tasks/{task_id}/files/candidates.fits", headers=headers)
    assert download.status_code == 200
    table = fits.open(io.BytesIO(download.content))[1].data
    assert len(table) == len(candidates)
    # the runner stored the footprint when photometry finished: the light curve finds the task
    transient = truth[0]
    curve = client.get(
        f"/lightcurve?ra={transient['ra']}&dec={transient['dec']}&format=csv", headers=headers
    )
    points = Table.read(curve.text, format="ascii.csv")
    assert list(points["task_id"]) == [task_id, task_id]
    assert sorted(points["kind"]) == ["difference", "direct"] and all(points["detected"])
    anonymous = client.get(f"/tasks/{task_id}/files/objects.fits", follow_redirects=False)
    assert anonymous.status_code in (302, 303, 401)


@pytest.mark.parametrize("name", ["../x.fits", "image.fits", "objects.fits", "catalog.exe"])
def test_input_file_names_are_restricted(client, api, name):
    from tests.web.test_tasks import fits_bytes, upload

    task_id = upload(client, fits_bytes()).json()["id"]
    response = client.post(
        f"/api/tasks/{task_id}/files/{name}", content=b"data", headers={**api, "x-filename": name}
    )
    assert response.status_code in (400, 404)


def test_duplicate_and_delete_through_the_api(client, api, settings):
    from tests.conftest import api_token, make_user
    from tests.web.test_tasks import fits_bytes, upload

    task_id = upload(client, fits_bytes()).json()["id"]
    client.post(
        f"/tasks/{task_id}/mask/",
        json={"regions": [{"shape": "circle", "x": 5, "y": 5, "radius": 2}]},
    )
    copy = client.post(f"/api/tasks/{task_id}/duplicate", headers=api)
    assert copy.status_code == 201
    copy_id = copy.json()["id"]
    assert (settings.tasks_dir / str(copy_id) / "custom_mask.json").is_file()
    make_user("guest")
    guest = {"authorization": f"Bearer {api_token('guest')}"}
    assert client.delete(f"/api/tasks/{copy_id}", headers=guest).status_code == 404
    assert client.delete(f"/api/tasks/{copy_id}", headers=api).status_code == 204
    assert client.get(f"/api/tasks/{copy_id}", headers=api).status_code == 404
    assert not (settings.tasks_dir / str(copy_id)).exists()
