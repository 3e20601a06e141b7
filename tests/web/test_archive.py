"""The archive browser: listing, FITS headers per HDU, import of an HDU, no escapes."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits


@pytest.fixture
def archive(settings, tmp_path):
    from jobs.settings import configure

    root = tmp_path / "archive"
    (root / "night1").mkdir(parents=True)
    data = np.random.default_rng(2).normal(100, 5, (50, 60)).astype(np.float32)
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(data, name="CCD1"), fits.ImageHDU(data * 2, name="CCD2")]
    ).writeto(root / "night1" / "mef.fits")
    (root / "night1" / "notes.txt").write_text("not an image")
    outside = tmp_path / "outside"
    outside.mkdir()
    fits.PrimaryHDU(data).writeto(outside / "private.fits")
    (root / "escape").symlink_to(outside)
    (root / "escape.fits").symlink_to(outside / "private.fits")
    configure(data_dir=settings.data_dir, archive_roots=f"obs={root}", heartbeat_s=0.2)
    return root


def test_browse_lists_folders_and_sizes(client, archive):
    roots = client.get("/archive/")
    assert "obs" in roots.text
    listing = client.get("/archive/obs/night1")
    assert listing.status_code == 200
    assert "mef.fits" in listing.text and "KiB" in listing.text
    top = client.get("/archive/obs/").text
    assert "night1" in top
    assert "escape" not in top  # symlinks leaving the root are not offered


def test_header_view_per_hdu_and_import_of_one_hdu(client, archive, settings):
    page = client.get("/archive/obs/night1/mef.fits")
    assert page.status_code == 200
    assert "CCD1" in page.text and "CCD2" in page.text and "NAXIS1" in page.text
    response = client.post(
        "/archive/import",
        data={"root": "obs", "path": "night1/mef.fits", "hdu": "2"},
        follow_redirects=False,
    )
    assert response.status_code in (302, 303), response.text
    task_id = int(response.headers["location"].rsplit("/", 1)[1])
    data = fits.getdata(settings.tasks_dir / str(task_id) / "image.fits")
    original = fits.getdata(archive / "night1" / "mef.fits", 2)
    np.testing.assert_allclose(data, original)


@pytest.mark.parametrize("path", ["../outside/private.fits", "escape/private.fits", "escape.fits"])
def test_paths_leaving_the_archive_are_refused(client, archive, settings, path):
    assert client.get(f"/archive/obs/{path}").status_code == 404
    response = client.post("/archive/import", data={"root": "obs", "path": path})
    assert response.status_code == 404
    assert not any(settings.tasks_dir.iterdir())


def test_non_fits_archive_file_is_explained(client, archive):
    page = client.get("/archive/obs/night1/notes.txt")
    assert page.status_code == 200
    assert "cannot be used" in page.text
    response = client.post("/archive/import", data={"root": "obs", "path": "night1/notes.txt"})
    assert response.status_code == 422
