"""Presets: saved from a task, applied at upload, archive (batch) import and the API."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from tests.web.test_tasks import fits_bytes, upload


def make_preset(client, settings) -> int:
    task_id = upload(client, fits_bytes((100, 100))).json()["id"]
    client.post(
        f"/tasks/{task_id}/mask/",
        json={"regions": [{"shape": "box", "x": 10.5, "y": 10.5, "width": 4, "height": 4}]},
    )
    ok = client.post(
        f"/tasks/{task_id}/steps/inspect/run", data={"gain": "2.5", "mask_cosmics": "on"}
    )
    assert ok.status_code in (200, 201)
    response = client.post(
        f"/presets/from-task/{task_id}", data={"name": "LCO 1m", "description": "Sinistro"}
    )
    assert response.status_code in (200, 303)
    page = client.get("/presets/").text
    assert "LCO 1m" in page and "custom_mask.fits" in page
    return int(page.split("<tr><td>")[1].split("<")[0])


def test_preset_applies_to_upload_and_api(client, settings, api):
    preset = make_preset(client, settings)
    task_id = client.post(
        "/tasks/upload",
        content=fits_bytes(),
        headers={"x-filename": "b.fits", "x-preset": str(preset), "accept": "application/json"},
    ).json()["id"]
    detail = client.get(f"/api/tasks/{task_id}").json()
    assert detail["config"]["inspect"]["gain"] == 2.5
    assert (settings.tasks_dir / str(task_id) / "custom_mask.fits").is_file()
    created = client.post(
        f"/api/tasks?preset={preset}", content=fits_bytes(), headers={**api, "x-filename": "c.fits"}
    )
    assert created.status_code == 201 and created.json()["config"]["inspect"]["gain"] == 2.5
    missing = client.post(
        "/api/tasks?preset=4242", content=fits_bytes(), headers={**api, "x-filename": "d.fits"}
    )
    assert missing.status_code == 400 and "no preset" in missing.json()["detail"]


def test_batch_import_from_archive_with_preset(client, settings, tmp_path):
    from jobs.settings import configure

    preset = make_preset(client, settings)
    root = tmp_path / "archive"
    root.mkdir()
    for index in range(3):
        data = np.random.default_rng(index).normal(100, 5, (40, 40)).astype(np.float32)
        fits.PrimaryHDU(data).writeto(root / f"frame{index}.fits")
    (root / "broken.fits").write_bytes(b"not fits at all")
    configure(data_dir=settings.data_dir, archive_roots=f"obs={root}")
    listing = client.get("/archive/obs/").text
    assert 'name="path" value="frame1.fits"' in listing
    response = client.post(
        "/archive/import",
        data={
            "root": "obs",
            "path": ["frame0.fits", "frame1.fits", "frame2.fits", "broken.fits"],
            "preset": str(preset),
        },
        follow_redirects=False,
    )
    assert response.status_code in (302, 303)
    tasks = client.get("/api/tasks").json()
    imported = [t for t in tasks if t["original_name"].startswith("frame")]
    assert len(imported) == 3
    assert all(t["config"]["inspect"]["gain"] == 2.5 for t in imported)
