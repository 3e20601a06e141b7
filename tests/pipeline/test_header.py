"""Reading observation facts from header dialects: time, exposure, gain, sections, pointing."""

from __future__ import annotations

import pytest
from astropy.io import fits
from astropy.time import Time

from pipeline import header as hdr
from pipeline.fitsio import load_image


def _header(**cards) -> fits.Header:
    header = fits.Header()
    for key, value in cards.items():
        header[key.replace("_", "-") if key in ("DATE_OBS", "TIME_OBS", "MJD_OBS") else key] = value
    return header


def _mjd(iso: str, scale: str = "utc") -> float:
    return float(Time(iso, scale=scale).utc.mjd)


# ------------------------------------------------------------------------ time


def test_date_obs_with_time():
    time, notes = hdr.read_time(_header(DATE_OBS="2021-05-01T03:12:45.5"))
    assert time.iso == "2021-05-01T03:12:45.500" and time.source == "DATE-OBS"
    assert time.mjd == pytest.approx(_mjd("2021-05-01T03:12:45.5"), abs=1e-9)
    assert notes == []


@pytest.mark.parametrize(
    ("cards", "expected", "source"),
    [
        ({"TIME-OBS": "03:12:45"}, "2021-05-01T03:12:45.000", "DATE-OBS+TIME-OBS"),
        ({"UT": "03 12 45.25"}, "2021-05-01T03:12:45.250", "DATE-OBS+UT"),
        ({"UT": 3.5}, "2021-05-01T03:30:00.000", "DATE-OBS+UT"),  # decimal hours
        ({"UTSTART": "23:59:59.9"}, "2021-05-01T23:59:59.900", "DATE-OBS+UTSTART"),
        ({"TM-START": 11048.0}, "2021-05-01T03:04:08.000", "DATE-OBS+TM-START"),  # ESO-MIDAS
    ],
)
def test_date_plus_time_of_day(cards, expected, source):
    header = _header(DATE_OBS="2021-05-01")
    for key, value in cards.items():
        header[key] = value
    time, _ = hdr.read_time(header)
    assert (time.iso, time.source) == (expected, source)


def test_dashes_in_time_and_old_date_format():
    time, _ = hdr.read_time(_header(DATE_OBS="2021-05-01T03-12-45.1"))
    assert time.iso == "2021-05-01T03:12:45.100"
    time, _ = hdr.read_time(_header(DATE_OBS="26/10/92", TIME_OBS="03:04:08"))
    assert time.iso == "1992-10-26T03:04:08.000"


@pytest.mark.parametrize(
    ("key", "value"),
    [("MJD-OBS", 59335.13386), ("MJD", 59335.13386), ("JD", 2459335.63386)],
)
def test_mjd_or_jd_only(key, value):
    time, notes = hdr.read_time(_header(**{key.replace("-", "_"): value}))
    assert time.mjd == pytest.approx(59335.13386, abs=1e-8)
    assert time.source == key and notes == []
    assert time.iso.startswith("2021-05-01T03:12:45")


def test_mid_exposure_time_is_moved_to_the_start():
    header = _header(EXPTIME=120.0)
    header["DATE-AVG"] = "2021-05-01T03:13:45"
    time, _ = hdr.read_time(header, exposure=120.0)
    assert time.iso == "2021-05-01T03:12:45.000"
    assert "EXPTIME/2" in time.source


def test_tai_time_system_is_converted_to_utc():
    # 2000-09-27: TAI - UTC = 32 s
    header = _header(DATE_OBS="2000-09-27", TIMESYS="TAI")
    header["TAIHMS"] = "02:50:45.01"
    time, _ = hdr.read_time(header)
    assert time.iso == "2000-09-27T02:50:13.010"


def test_date_only_gives_a_note():
    time, notes = hdr.read_time(_header(DATE_OBS="2021-05-01"))
    assert time.date_only and time.iso == "2021-05-01T00:00:00.000"
    assert any("no time of day" in note for note in notes)


def test_no_time_at_all():
    time, notes = hdr.read_time(_header(OBJECT="M31"))
    assert time is None and notes == []


def test_garbage_date_is_reported():
    header = _header(DATE_OBS="yesterday", MJD_OBS=59000.5)
    time, notes = hdr.read_time(header)
    assert time.source == "MJD-OBS"
    assert any("not a date" in note for note in notes)


def test_parse_time_string():
    assert hdr.parse_time_string("2023-03-15T03:12:45").utc.isot == "2023-03-15T03:12:45.000"
    assert hdr.parse_time_string("60018.5").mjd == 60018.5
    assert hdr.parse_time_string("2460019.0").mjd == pytest.approx(60018.5)
    assert hdr.parse_time_string("soon") is None


def test_real_saao_time_ignores_date_only_mjd(real_data):
    # MJD-OBS = 56486.0 is the date written as MJD; DATE-OBS + UT give the time
    _, header = load_image(real_data / "saao1m_raw_a8280271.fits")
    time, notes = hdr.read_time(header)
    assert time.iso == "2013-07-13T00:57:33.000" and time.source == "DATE-OBS+UT"
    assert notes == []


def test_real_sdss_time_is_tai(real_data):
    _, header = load_image(real_data / "sdss_g_run1737_c5_f47_full.fits.bz2")
    time, _ = hdr.read_time(header)
    assert time.iso == "2000-09-27T02:50:13.010"


def test_real_emmi_times_disagree(real_data):
    # TM-START says 03:04:08 (as the ESO-LOG cards do); MJD-OBS is 12 h later
    _, header = load_image(real_data / "sep_eso_emmi_image.fits")
    time, notes = hdr.read_time(header)
    assert time.iso == "1992-10-26T03:04:08.000"
    assert any("disagree" in note and "MJD-OBS" in note for note in notes)


# ------------------------------------------------------- exposure, gain, saturation


def test_numbers_written_as_strings():
    assert hdr.read_exposure(_header(EXPTIME="53.907456")) == (53.907456, "EXPTIME")
    assert hdr.to_float("1.5D3") == 1500.0
    assert hdr.to_float("abc") is None and hdr.to_float(True) is None


def test_keyword_fallbacks_and_invalid_values():
    assert hdr.read_exposure(_header(ITIME=30)) == (30.0, "ITIME")
    assert hdr.read_gain(_header(GAIN=0.0, EGAIN=2.5)) == (2.5, "EGAIN")
    assert hdr.read_gain(_header(GAIN="n/a")) == (None, None)
    assert hdr.read_gain(_header(CCDGAIN=-1.0)) == (None, None)
    assert hdr.read_saturation(_header(MAXLIN=60000)) == (60000.0, "MAXLIN")
    assert hdr.read_saturation(_header(SATURATE=50000, DATAMAX=65535)) == (50000.0, "SATURATE")
    assert hdr.read_read_noise(_header(RDNOISE=5.0)) == (5.0, "RDNOISE")


# ------------------------------------------------------------------ filter


def test_filter_wheels():
    raw, name, key = hdr.read_filter(_header(FILTER1="Open", FILTER2="sdss_r"))
    assert (raw, name, key) == ("sdss_r", "r", "FILTER2")
    raw, name, key = hdr.read_filter(_header(FILTER1="Open", FILTER2="Clear"))
    assert name == "clear" and key == "FILTER1"
    raw, name, key = hdr.read_filter(_header(FILTER="Halpha"))
    assert (raw, name) == ("Halpha", None)
    assert hdr.read_filter(_header(OBJECT="x")) == (None, None, None)


def test_eso_filter_cards(real_data):
    _, header = load_image(real_data / "sep_eso_emmi_image.fits")
    assert hdr.read_filter(header) == ("R", "R", "ESO INS OPTI-7 NAME")


# ------------------------------------------------------------------ binning


@pytest.mark.parametrize(
    ("cards", "expected"),
    [
        ({"XBINNING": 2, "YBINNING": 2}, [2, 2]),
        ({"CCDSUM": "2 1"}, [2, 1]),
        ({"BINNING": "3x3"}, [3, 3]),
        ({"BINNING": "4"}, [4, 4]),
        ({"CCDXBIN": 1, "CCDYBIN": 1}, [1, 1]),
        ({"OBJECT": "x"}, None),
    ],
)
def test_binning(cards, expected):
    assert hdr.read_binning(_header(**cards))[0] == expected


# ------------------------------------------------------------------ sections


def test_parse_section():
    section = hdr.parse_section("[  17: 528,   1: 520]", (520, 536))
    assert (section.x0, section.x1, section.y0, section.y1) == (16, 528, 0, 520)
    assert section.slices == (slice(0, 520), slice(16, 528))
    assert section.as_fits() == "[17:528,1:520]"
    reversed_ = hdr.parse_section("[528:17,520:1]", (520, 536))
    assert reversed_ == section
    assert hdr.parse_section("[*,11:20]", (100, 50)) == hdr.Section(0, 50, 10, 20)
    clipped = hdr.parse_section("[1:2000,1:50]", (100, 50))
    assert (clipped.x1, clipped.y1) == (50, 50)
    assert hdr.parse_section("[600:700,1:10]", (100, 50)) is None  # outside the image
    assert hdr.parse_section("rows 1-10", (100, 50)) is None
    assert hdr.parse_section("[1:50,1:100]", (100, 50)).covers((100, 50))


def test_data_section_prefers_trimsec_and_reports_bad_keywords():
    header = _header(DATASEC="[1:100,1:100]", TRIMSEC="[5:90,1:100]")
    section, key, problems = hdr.read_data_section(header, (100, 100))
    assert key == "TRIMSEC" and section.x0 == 4 and problems == []
    header = _header(TRIMSEC="[2000:3000,1:5]", DATASEC="[3:98,1:100]")
    section, key, problems = hdr.read_data_section(header, (100, 100))
    assert key == "DATASEC" and section.x0 == 2
    assert problems and "TRIMSEC" in problems[0]


def test_overscan():
    shape = (520, 536)
    data = hdr.parse_section("[17:528,1:520]", shape)
    header = _header(BIASSEC="[4:13,1:520]")
    assert hdr.read_overscan(header, shape, data) == hdr.Section(3, 13, 0, 520)
    # a stale BIASSEC inside the data area (left after trimming) is ignored
    assert hdr.read_overscan(_header(BIASSEC="[20:30,1:520]"), shape, data) is None
    assert hdr.read_overscan(_header(BIASSEC="[1:400,1:520]"), shape, None) is None
    assert hdr.read_overscan(_header(OBJECT="x"), shape, data) is None


# ------------------------------------------------------------------ pointing


def test_pointing_formats():
    ra, dec, source = hdr.read_pointing(_header(OBJCTRA="22 04 08", OBJCTDEC="-00 55 31"))
    assert ra == pytest.approx(331.0333333, abs=1e-6) and dec == pytest.approx(-0.9252778)
    assert source == "OBJCTRA/OBJCTDEC"
    ra, dec, _ = hdr.read_pointing(_header(RA=331.0334, DEC=-0.9253))
    assert (ra, dec) == (331.0334, -0.9253)
    header = _header(DEC=10.0)
    header["RA"] = (2.5, "[h] right ascension")
    assert hdr.read_pointing(header)[0] == 37.5
    ra, dec, _ = hdr.read_pointing(_header(RA="12h30m00s", DEC="+10d30m00s"))
    assert (ra, dec) == (pytest.approx(187.5), pytest.approx(10.5))


def test_pointing_skips_invalid_pairs():
    header = _header(RA="unknown", DEC="unknown", RA_OBS=10.0, DEC_OBS=-20.0)
    assert hdr.read_pointing(header) == (10.0, -20.0, "RA_OBS/DEC_OBS")
    assert hdr.read_pointing(_header(RA=400.0, DEC=0.0)) == (None, None, None)


def test_real_saao_pointing(real_data):
    _, header = load_image(real_data / "saao1m_raw_a8280271.fits")
    ra, dec, _ = hdr.read_pointing(header)
    # RA = ' 22:04:08' (hours) agrees with RA_OBS = 331.0334 (degrees)
    assert ra == pytest.approx(header["RA_OBS"], abs=2e-4)
    assert dec == pytest.approx(header["DEC_OBS"], abs=2e-4)
