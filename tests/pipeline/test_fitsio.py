"""Loading uploaded FITS files: real files, compressed variants, and every kind of bad input."""

from __future__ import annotations

import bz2
import gzip

import numpy as np
import pytest
from astropy.io import fits

from pipeline.fitsio import (
    MIN_IMAGE_SIDE,
    ORIGINAL_DTYPE_KEY,
    FitsInputError,
    list_hdus,
    load_image,
    write_task_image,
)


def _image(shape=(64, 80), seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(1000.0, 30.0, shape).astype(np.float32)


def _write(path, *hdus):
    fits.HDUList(list(hdus)).writeto(path, overwrite=True)
    return path


# ------------------------------------------------------------------ real files


def test_saao_uint16_frame(real_data):
    data, header = load_image(real_data / "saao1m_raw_a8280271.fits")
    expected = fits.getdata(real_data / "saao1m_raw_a8280271.fits").astype(np.float32)
    assert data.shape == (520, 536)
    assert data.dtype == np.float32 and data.dtype.isnative
    np.testing.assert_array_equal(data, expected)
    assert header[ORIGINAL_DTYPE_KEY] == "uint16"
    assert "BZERO" not in header and "BSCALE" not in header
    assert header["GAIN"] == 1.9 and header["TRIMSEC"].startswith("[")


def test_eso_scaled_int16_frame(real_data):
    path = real_data / "sep_eso_emmi_image.fits"
    data, header = load_image(path)
    with fits.open(path) as hdul:
        raw = hdul[0].data.astype(np.float32)
    np.testing.assert_allclose(data, raw, rtol=1e-6)
    assert header[ORIGINAL_DTYPE_KEY] == "int16 (scaled)"
    assert 6000 < float(np.median(data)) < 7500  # BSCALE/BZERO applied


def test_sdss_bz2_frame(real_data):
    data, header = load_image(real_data / "sdss_g_run1737_c5_f47_full.fits.bz2")
    assert data.shape == (1489, 2048)
    assert header["FILTER"].strip() == "g"
    assert header[ORIGINAL_DTYPE_KEY] == "float32"


# ------------------------------------------------------------- compressed, MEF


def test_gzip_and_bzip2_streams(tmp_path):
    data = _image()
    _write(tmp_path / "plain.fits", fits.PrimaryHDU(data))
    raw = (tmp_path / "plain.fits").read_bytes()
    (tmp_path / "a.fits.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "a.fits.bz2").write_bytes(bz2.compress(raw))
    for name in ("a.fits.gz", "a.fits.bz2"):
        loaded, _ = load_image(tmp_path / name)
        np.testing.assert_array_equal(loaded, data)


def test_tile_compressed_extension_inherits_primary_keywords(tmp_path):
    data = _image()
    primary = fits.PrimaryHDU()
    primary.header["FILTER"] = "r"
    primary.header["DATE-OBS"] = "2021-01-02T03:04:05"
    image = fits.CompImageHDU(data, name="SCI", compression_type="GZIP_1", quantize_level=0.0)
    image.header["EXPTIME"] = 30.0
    path = _write(tmp_path / "c.fits.fz", primary, image)
    loaded, header = load_image(path)
    np.testing.assert_allclose(loaded, data, rtol=1e-6)
    assert header["FILTER"] == "r" and header["EXPTIME"] == 30.0
    assert header["DATE-OBS"] == "2021-01-02T03:04:05"
    assert not any(key.startswith(("ZIMAGE", "ZCMPTYPE", "ZBITPIX")) for key in header)


def test_first_usable_image_hdu_is_chosen(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.arange(3.0))])
    thumb = fits.ImageHDU(np.zeros((8, 8), np.float32), name="THUMB")
    data = _image(seed=3)
    path = _write(tmp_path / "mef.fits", fits.PrimaryHDU(), table, thumb, fits.ImageHDU(data))
    loaded, _ = load_image(path)
    np.testing.assert_array_equal(loaded, data)


def test_hdu_by_index_and_name(tmp_path):
    a, b = _image(seed=1), _image(seed=2)
    path = _write(
        tmp_path / "two.fits", fits.PrimaryHDU(), fits.ImageHDU(a, name="A"),
        fits.ImageHDU(b, name="B"),
    )  # fmt: skip
    np.testing.assert_array_equal(load_image(path, hdu=2)[0], b)
    np.testing.assert_array_equal(load_image(path, hdu="b")[0], b)
    with pytest.raises(FitsInputError, match=r"out of range.*3 HDU"):
        load_image(path, hdu=3)
    with pytest.raises(FitsInputError, match=r"HDU 0 .*not a 2-D image"):
        load_image(path, hdu=0)
    with pytest.raises(FitsInputError, match="no HDU named 'C'"):
        load_image(path, hdu="C")


def test_degenerate_cube_is_squeezed(tmp_path):
    data = _image()
    hdu = fits.PrimaryHDU(data[np.newaxis])
    hdu.header["CTYPE3"] = "FREQ"
    loaded, header = load_image(_write(tmp_path / "cube.fits", hdu))
    assert loaded.shape == data.shape
    np.testing.assert_array_equal(loaded, data)
    assert "NAXIS3" not in header


def test_real_cube_is_refused(tmp_path):
    path = _write(tmp_path / "cube.fits", fits.PrimaryHDU(np.zeros((3, 32, 32), np.float32)))
    with pytest.raises(FitsInputError, match="no 2-D image"):
        load_image(path)


def test_blank_integers_become_nan(tmp_path):
    raw = np.arange(32 * 32, dtype=np.int16).reshape(32, 32)
    raw[0, 0] = -32768
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BLANK"] = -32768
    data, _ = load_image(_write(tmp_path / "blank.fits", hdu))
    assert np.isnan(data[0, 0]) and data[0, 1] == 1.0


# ------------------------------------------------------------------ bad input


def test_not_a_fits_file(tmp_path):
    (tmp_path / "notes.fits").write_text("hello, this is not an image\n" * 50)
    with pytest.raises(FitsInputError, match="not a FITS file"):
        load_image(tmp_path / "notes.fits")


def test_png_is_named(tmp_path):
    (tmp_path / "photo.fits").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(FitsInputError, match="PNG image, not a FITS file"):
        load_image(tmp_path / "photo.fits")


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.fits").write_bytes(b"")
    with pytest.raises(FitsInputError, match="empty"):
        load_image(tmp_path / "empty.fits")
    with pytest.raises(FitsInputError, match="not found"):
        load_image(tmp_path / "nothing.fits")


def test_fits_errors_are_value_errors():
    assert issubclass(FitsInputError, ValueError)


def test_truncated_data(tmp_path):
    path = _write(tmp_path / "full.fits", fits.PrimaryHDU(_image((200, 300))))
    raw = path.read_bytes()
    (tmp_path / "cut.fits").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FitsInputError, match="truncated"):
        load_image(tmp_path / "cut.fits")
    (tmp_path / "cut_header.fits").write_bytes(raw[:1000])
    with pytest.raises(FitsInputError, match="truncated"):
        load_image(tmp_path / "cut_header.fits")


def test_missing_padding_only_is_accepted(tmp_path):
    # 300*200*4 = 240000 data bytes, padded to 241920: losing part of the padding loses no pixel
    data = _image((200, 300))
    raw = _write(tmp_path / "full.fits", fits.PrimaryHDU(data)).read_bytes()
    (tmp_path / "short.fits").write_bytes(raw[:-1000])
    loaded, _ = load_image(tmp_path / "short.fits")
    np.testing.assert_array_equal(loaded, data)


def test_truncated_extension(tmp_path):
    data = _image((200, 300))
    path = _write(tmp_path / "mef.fits", fits.PrimaryHDU(), fits.ImageHDU(data))
    raw = path.read_bytes()
    (tmp_path / "cut.fits").write_bytes(raw[: len(raw) - 5000])
    with pytest.raises(FitsInputError, match="truncated"):
        load_image(tmp_path / "cut.fits")


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
def test_truncated_compressed_stream(tmp_path, compress):
    raw = _write(tmp_path / "full.fits", fits.PrimaryHDU(_image((400, 400)))).read_bytes()
    packed = compress(raw)
    (tmp_path / "cut.fits.x").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(FitsInputError, match="truncated"):
        load_image(tmp_path / "cut.fits.x")


def test_truncated_tile_compressed(tmp_path):
    rng = np.random.default_rng(1)
    hdu = fits.CompImageHDU(rng.normal(0, 1, (300, 300)).astype(np.float32))
    raw = _write(tmp_path / "c.fits.fz", fits.PrimaryHDU(), hdu).read_bytes()
    (tmp_path / "cut.fits.fz").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(FitsInputError, match="truncated"):
        load_image(tmp_path / "cut.fits.fz")


def test_table_only_file(tmp_path):
    table = fits.BinTableHDU.from_columns(
        [fits.Column("ra", "D", array=np.arange(5.0))], name="CATALOG"
    )
    path = _write(tmp_path / "cat.fits", fits.PrimaryHDU(), table)
    with pytest.raises(FitsInputError, match=r"no 2-D image.*CATALOG \(binary table\)"):
        load_image(path)


def test_too_small_image(tmp_path):
    path = _write(tmp_path / "tiny.fits", fits.PrimaryHDU(np.ones((10, 10), np.float32)))
    with pytest.raises(FitsInputError, match=f"only 10×10 pixels.*at least {MIN_IMAGE_SIDE}"):
        load_image(path)


# ------------------------------------------------------------ browser, writing


def test_list_hdus_reads_headers_only(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.arange(7.0))], name="T")
    data = _image((200, 300))
    path = _write(
        tmp_path / "mef.fits", fits.PrimaryHDU(), table, fits.ImageHDU(data.astype(np.int16))
    )
    # cut inside the image data: a pixel read would fail, a header listing does not
    raw = path.read_bytes()
    (tmp_path / "cut.fits").write_bytes(raw[:-50000])
    rows = list_hdus(tmp_path / "cut.fits")
    assert [r["type"] for r in rows] == ["empty", "binary table", "image"]
    assert rows[1]["shape"] == [7] and rows[1]["dtype"] == "table"
    assert rows[2]["shape"] == [200, 300] and rows[2]["dtype"] == "int16"
    assert [r["usable"] for r in rows] == [False, False, True]
    assert "NAXIS1  =                  300" in rows[2]["header"]


def test_list_hdus_compressed(tmp_path):
    path = _write(tmp_path / "c.fits.fz", fits.PrimaryHDU(), fits.CompImageHDU(_image()))
    rows = list_hdus(path)
    assert rows[1]["type"] == "compressed image" and rows[1]["shape"] == [64, 80]
    assert rows[1]["usable"]


def test_write_task_image(real_data, tmp_path):
    dest = tmp_path / "task" / "image.fits"
    written = write_task_image(real_data / "sep_eso_emmi_image.fits", dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["image.fits"]  # no temp left
    with fits.open(dest) as hdul:
        assert len(hdul) == 1
        assert hdul[0].data.dtype == np.dtype(">f4")
        assert "BSCALE" not in hdul[0].header
        assert hdul[0].header[ORIGINAL_DTYPE_KEY] == "int16 (scaled)"
        assert hdul[0].header["EXPTIME"] == 1200.0
    assert written["INSTRUME"] == "EMMI"
    again, header = load_image(dest)
    original, _ = load_image(real_data / "sep_eso_emmi_image.fits")
    np.testing.assert_array_equal(again, original)
    assert header[ORIGINAL_DTYPE_KEY] == "int16 (scaled)"  # survives a second load


def test_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "bad.fits").write_text("not fits" * 400)
    dest = tmp_path / "task" / "image.fits"
    with pytest.raises(FitsInputError):
        write_task_image(tmp_path / "bad.fits", dest)
    assert not dest.exists()
    assert not dest.parent.exists() or not any(dest.parent.iterdir())
