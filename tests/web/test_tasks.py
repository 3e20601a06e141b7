"""Pages and uploads of the portal, driven through the real app with its embedded worker."""

from __future__ import annotations

import bz2
import io

import numpy as np
import pytest
from astropy.io import fits

from tests.conftest import start_session, wait_for_run


def fits_bytes(shape=(64, 64), header: dict | None = None) -> bytes:
    rng = np.random.default_rng(1)
    hdu = fits.PrimaryHDU(rng.normal(1000, 10, shape).astype(np.float32))
    for key, value in (header or {}).items():
        hdu.header[key] = value
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


def upload(client, content: bytes, name: str = "image.fits", title: str = ""):
    return client.post(
        "/tasks/upload",
        content=content,
        headers={"x-filename": name, "x-title": title, "accept": "application/json"},
    )


def test_upload_creates_task_with_folder_and_row(client, settings):
    response = upload(client, fits_bytes(), "frame.fits", "first light")
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    assert (settings.tasks_dir / str(task_id) / "image.fits").is_file()
    page = client.get(f"/tasks/{task_id}")
    assert page.status_code == 200
    assert "first light" in page.text
    for title in ("Inspection", "Photometry", "Simple transients", "Image subtraction"):
        assert title in page.text
    listing = client.get("/tasks/")
    assert "frame.fits" in listing.text


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"this is not a FITS file at all" * 100, "notes.fits", "FITS"),
        (fits_bytes()[: 2880 + 1000], "truncated.fits", "truncated"),
        (b"", "empty.fits", "empty"),
    ],
)
def test_bad_uploads_get_clear_messages_and_store_nothing(client, settings, content, name, message):
    response = upload(client, content, name)
    assert 400 <= response.status_code < 500
    assert message.lower() in response.json()["detail"].lower()
    assert not any(settings.tasks_dir.iterdir())
    assert client.get("/api/tasks").json() == []


def test_table_only_fits_is_refused(client):
    table = fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.arange(3.0))])
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buffer)
    response = upload(client, buffer.getvalue(), "table.fits")
    assert response.status_code == 422
    assert "image" in response.json()["detail"].lower()


def test_upload_over_the_limit_is_refused(settings, tmp_path):
    from litestar.testing import TestClient

    from jobs.settings import configure
    from web.app import create_app

    small = configure(data_dir=settings.data_dir, max_upload_mb=1)
    with TestClient(create_app(small)) as client:
        start_session(client, "admin")
        response = upload(client, fits_bytes((1024, 1024)), "big.fits")
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert not any(small.tasks_dir.iterdir())


def test_upload_without_csrf_token_is_refused(client):
    del client.headers["x-csrftoken"]
    response = upload(client, fits_bytes())
    assert response.status_code == 403


def test_compressed_upload_is_accepted(client, real_data):
    content = (real_data / "sdss_g_run1737_c5_f47_full.fits.bz2").read_bytes()
    response = upload(client, content, "sdss.fits.bz2")
    assert response.status_code == 201, response.text
    assert bz2.decompress(content)[:6] == b"SIMPLE"


def test_missing_task_and_step_give_404(client):
    assert client.get("/tasks/999").status_code == 404
    assert "does not exist" in client.get("/tasks/999").text
    assert client.get("/api/tasks/999").status_code == 404
    assert client.get(f"/tasks/{2**80}").status_code == 404  # beyond the id column's range
    task_id = upload(client, fits_bytes()).json()["id"]
    assert client.get(f"/tasks/{task_id}/steps/nosuchstep").status_code == 404


def test_task_files_cannot_escape_the_task_folder(client, settings):
    task_id = upload(client, fits_bytes()).json()["id"]
    (settings.data_dir / "secret.txt").write_text("TOP-SECRET-CONTENT")
    for path in ("../../secret.txt", "..%2F..%2Fsecret.txt", "/etc/passwd"):
        response = client.get(f"/tasks/{task_id}/files/{path}")
        assert response.status_code == 404, path
        assert "TOP-SECRET-CONTENT" not in response.text
    (settings.tasks_dir / str(task_id) / "link.txt").symlink_to(settings.data_dir / "secret.txt")
    assert client.get(f"/tasks/{task_id}/files/link.txt").status_code == 404


def test_download_and_view_files(client):
    task_id = upload(client, fits_bytes()).json()["id"]
    download = client.get(f"/tasks/{task_id}/files/image.fits?download=true")
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.content[:6] == b"SIMPLE"
    viewer = client.get(f"/tasks/{task_id}/view/image.fits")
    assert viewer.status_code == 200
    assert "js9.min.js" in viewer.text and "helperType" not in viewer.text
    assert client.get("/static/js/js9prefs.js").text.count('helperType: "none"') == 1


def test_run_inspection_from_the_page_and_rerun_clears(client, settings, real_data):
    task_id = upload(
        client, (real_data / "saao1m_raw_a8280271.fits").read_bytes(), "saao.fits"
    ).json()["id"]
    response = client.post(
        f"/tasks/{task_id}/steps/inspect/run",
        data={"mask_cosmics": "on"},
        headers={"hx-request": "true"},
    )
    assert response.status_code in (200, 201), response.text
    run = wait_for_run(client, task_id, "inspect")
    assert run["state"] == "done", run
    assert run["summary"]["gain"] == pytest.approx(1.9)
    page = client.get(f"/tasks/{task_id}/steps/inspect").text
    assert "mask.fits" in page and "Re-run" in page
    assert (settings.tasks_dir / str(task_id) / "inspect.log").read_text().strip()

    # A form error is shown on the field, and nothing is queued.
    bad = client.post(f"/tasks/{task_id}/steps/inspect/run", data={"gain": "-3"})
    assert "error-text" in bad.text
    assert client.get(f"/api/tasks/{task_id}").json()["steps"]["inspect"]["id"] == run["id"]

    again = client.post(f"/tasks/{task_id}/steps/inspect/run", data={})
    assert again.status_code in (200, 201)
    rerun = wait_for_run(client, task_id, "inspect")
    assert rerun["id"] != run["id"] and rerun["state"] == "done"


def test_steps_not_built_offer_no_controls(client, api):
    from pipeline.steps import STEPS

    task_id = upload(client, fits_bytes()).json()["id"]
    for spec in STEPS:
        html = client.get(f"/tasks/{task_id}/steps/{spec.name}").text
        if spec.available:
            assert "Run " in html
        else:
            assert "not built yet" in html and "<button" not in html
            response = client.post(f"/api/tasks/{task_id}/steps/{spec.name}", json={}, headers=api)
            assert response.status_code == 409


def test_task_list_filters_and_paginates(client, settings):
    for index in range(settings.tasks_per_page + 3):
        upload(client, fits_bytes(), f"frame{index:02d}.fits", f"night {index % 2}")
    first = client.get("/tasks/")
    assert "page 1 of 2" in first.text
    assert first.text.index("frame22.fits") < first.text.index("frame21.fits")  # newest first
    filtered = client.get("/tasks/?q=night+1")
    assert "frame01.fits" in filtered.text and "frame02.fits" not in filtered.text
    partial = client.get(
        "/tasks/?q=frame0&page=1", headers={"hx-request": "true", "hx-target": "task-list"}
    )
    assert partial.text.lstrip().startswith('<div id="task-list">')


def test_demo_creates_a_simulated_task_with_its_catalogue(client, settings):
    response = client.post("/tasks/demo", data={}, follow_redirects=False)
    assert response.status_code in (302, 303), response.text
    task_id = int(response.headers["location"].rsplit("/", 1)[1])
    folder = settings.tasks_dir / str(task_id)
    for name in ("image.fits", "demo_catalog.fits", "demo_template.fits", "demo_truth.json"):
        assert (folder / name).is_file(), name
    header = fits.getheader(folder / "image.fits")
    assert header["NAXIS1"] == 1024 and "GAIN" in header


def test_custom_mask_regions_are_validated_and_stored(client, settings):
    task_id = upload(client, fits_bytes((100, 120))).json()["id"]
    url = f"/tasks/{task_id}/mask/"
    bad = client.post(url, json={"regions": [{"shape": "star", "x": 1}]})
    assert bad.status_code == 400 and "unknown shape" in bad.json()["detail"]
    everything = client.post(
        url, json={"regions": [{"shape": "circle", "x": 5, "y": 5, "radius": 2}], "invert": True}
    )
    assert everything.status_code == 400 and "95" in everything.json()["detail"]
    ok = client.post(
        url, json={"regions": [{"shape": "box", "x": 10.5, "y": 20.5, "width": 10, "height": 4}]}
    )
    assert ok.status_code == 200 and ok.json()["masked_fraction"] == pytest.approx(40 / 12000)
    mask = fits.getdata(settings.tasks_dir / str(task_id) / "custom_mask.fits")
    assert mask.sum() == 40
    assert client.get(url).json()["regions"][0]["shape"] == "box"
    assert client.post(url, json={"regions": []}).json()["regions"] == 0
    assert not (settings.tasks_dir / str(task_id) / "custom_mask.fits").exists()


def test_demo_task_runs_inspection_and_calibrated_photometry_offline(client, api):
    response = client.post("/tasks/demo", data={}, follow_redirects=False)
    task_id = int(response.headers["location"].rsplit("/", 1)[1])
    for step in ("inspect", "photometry"):
        queued = client.post(f"/api/tasks/{task_id}/steps/{step}", json={}, headers=api)
        assert queued.status_code == 201, queued.text
        run = wait_for_run(client, task_id, step, timeout=300)
        assert run["state"] == "done", run["error"]
    summary = run["summary"]
    assert summary["catalog"] == "ps1" and summary["wcs_matches"] > 50
    assert summary["color_term"] == pytest.approx(0.1, abs=0.03)  # the simulator's colour term
    page = client.get(f"/tasks/{task_id}/steps/photometry").text
    assert "Calibrated magnitudes are" in page and "g-r colour term" in page
    assert "calibration.png" in page
    corrected = client.get(f"/tasks/{task_id}/download/image-wcs.fits")
    assert corrected.status_code == 200
    header = fits.Header.fromstring(corrected.content[:28800].decode("ascii", "replace"))
    assert header["CTYPE1"].startswith("RA---TAN") and "A_ORDER" in header
    # a catalogue path outside the task folder is refused
    bad = client.post(
        f"/tasks/{task_id}/steps/photometry/run", data={"catalog_file": "../../secret.fits"}
    )
    assert "not a file of this task" in bad.text


def test_template_upload_is_validated_and_stored(client, settings):
    task_id = upload(client, fits_bytes()).json()["id"]
    url = f"/tasks/{task_id}/template"
    bad = client.post(
        url, content=b"nope" * 100, headers={"x-filename": "t.fits", "accept": "application/json"}
    )
    assert bad.status_code == 422
    assert not (settings.tasks_dir / str(task_id) / "custom_template.fits").exists()
    ok = client.post(
        url,
        content=fits_bytes((80, 80)),
        headers={"x-filename": "t.fits", "accept": "application/json"},
    )
    assert ok.status_code == 201
    assert fits.getdata(settings.tasks_dir / str(task_id) / "custom_template.fits").shape == (
        80,
        80,
    )


def test_pages_are_compressed_but_files_are_not(client):
    task_id = upload(client, fits_bytes()).json()["id"]
    page = client.get(f"/tasks/{task_id}", headers={"accept-encoding": "gzip"})
    assert page.headers.get("content-encoding") == "gzip" and "<html" in page.text
    image = client.get(f"/tasks/{task_id}/files/image.fits", headers={"accept-encoding": "gzip"})
    assert image.status_code == 200 and "content-encoding" not in image.headers
