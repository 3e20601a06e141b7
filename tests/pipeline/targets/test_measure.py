"""measure_targets end to end on the simulated field, with local Sesame, Fink and hips2fits.

The targets: an injected transient by its TNS name (resolved by the local Fink), one by
sexagesimal coordinates, one as a pixel position, a galaxy by a SIMBAD name (local
Sesame) and an empty position. The local hips2fits serves the simulator's template
(another epoch, its own pointing and distortion) as "Pan-STARRS DR1 r".
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

from pipeline.cutouts import read_cutout
from pipeline.measurement import MeasurementConfig
from pipeline.targets import (
    TARGET_COLUMNS,
    TargetError,
    TargetNotFound,
    TargetsConfig,
    measure_targets,
)
from tests.fixture_servers.tns import TNSObject

PS1_R = "CDS/P/PanSTARRS/DR1/r"
TIME = "2023-03-15T03:12:45.000"
SIZE = 48


def run(field, config, tmp_path, **kwargs):
    inputs = field.measurement_inputs() | kwargs
    return measure_targets(
        config,
        field.sky.image,
        fwhm=field.fwhm,
        out_dir=tmp_path,
        measurement=MeasurementConfig(),
        calibration=inputs.pop("calibration", field.calibration),
        time_iso=TIME,
        filter_name="r",
        **inputs,
    )


@pytest.fixture
def services(field, sesame_server, fink_server, hips2fits_server):
    transients = field.sky.truth.transients
    first = transients[~transients["on_galaxy"]][0]
    fink_server.add(TNSObject("2023abc", "SN", float(first["ra"]), float(first["dec"])))
    galaxy = field.sky.truth.galaxies[0]
    sesame_server.add("NGC 9999", float(galaxy["ra"]), float(galaxy["dec"]), "G")
    template = field.sky.template
    hips2fits_server.surveys[PS1_R] = (template.image, template.wcs)
    return sesame_server, fink_server, hips2fits_server


def config_for(services, targets, **kwargs) -> TargetsConfig:
    sesame, fink, hips = services
    return TargetsConfig(
        targets=targets,
        sesame_url=sesame.sesame_url,
        fink_url=fink.url,
        hips2fits_url=hips.url,
        resolver_timeout=1.0,
        target_cutout_size=SIZE,
        **kwargs,
    )


def test_full_run(field, services, tmp_path):
    isolated = field.sky.truth.transients[~field.sky.truth.transients["on_galaxy"]]
    second, third = isolated[1], isolated[2]
    coordinates = SkyCoord(second["ra"], second["dec"], unit="deg").to_string(
        "hmsdms", sep=":", precision=3
    )
    empty_x, empty_y = field.empty_positions(1)[0]
    lines = [
        "SN 2023abc",
        coordinates,
        f"x={third['x']:.3f} y={third['y']:.3f}",
        "NGC 9999",
        f"x={empty_x:.2f} y={empty_y:.2f}",
    ]
    result = run(field, config_for(services, lines), tmp_path)
    table = result.table
    assert result.warnings == []
    assert tuple(table.colnames) == TARGET_COLUMNS
    assert list(table["index"]) == [1, 2, 3, 4, 5]
    assert list(table["primary"]) == [True, False, False, False, False]
    assert list(table["source"]) == ["Fink", "coordinates", "pixel", "SIMBAD", "pixel"]
    assert table["name"][0] == "SN 2023abc" and table["otype"][3] == "G"
    assert table["name"][1].startswith("J") and table["name"][2].startswith("x=")
    # the transients are where the truth has them, and measured about right
    for row, truth in zip(table[:3], isolated[:3], strict=True):
        assert np.hypot(row["x"] - truth["x"], row["y"] - truth["y"]) < 0.01
        assert row["detected"]
        assert abs(row["mag_calib"] - truth["mag"]) < 3 * row["mag_calib_err"]
    assert not table["detected"][4] and np.isfinite(table["mag_limit"][4])
    assert list(table["filter"]) == ["r"] * 5 and table["mag_band"][0] == "r"
    assert table["mag_color_name"][0] == "g-r"

    expected = ["targets.fits"] + [
        f"targets/target_{i:04d}.{ext}" for i in range(1, 6) for ext in ("fits", "png")
    ]
    assert result.files == expected
    assert all((tmp_path / name).exists() for name in expected)
    assert list(table["cutout"]) == [f"targets/target_{i:04d}.png" for i in range(1, 6)]

    stored = Table.read(tmp_path / "targets.fits")
    assert stored.colnames == table.colnames and len(stored) == 5
    header = fits.getheader(tmp_path / "targets.fits", 1)
    assert header["FILTER"] == "r" and header["DATE-OBS"] == TIME
    assert header["MAGBAND"] == "r" and header["CALIBRAT"] is True
    assert header["APERTUR"] == pytest.approx(field.fwhm, abs=1e-4)

    cutout = read_cutout(tmp_path / "targets/target_0001.fits")
    assert [p.name for p in cutout.panels] == ["image", "atlas", "mask"]
    assert cutout.panel("atlas").title == "Pan-STARRS DR1 r"
    assert cutout.panel("atlas").data.shape == (SIZE, SIZE)
    assert cutout.meta["NAME"] == "SN 2023abc" and cutout.meta["ATLAS"] == PS1_R
    assert cutout.meta["DETECTED"] is True
    cx, cy = cutout.center
    assert cutout.panel("image").data[round(cy), round(cx)] > np.nanmedian(
        cutout.panel("image").data
    )

    summary = result.summary
    json.dumps(summary)  # plain JSON values only
    assert (summary["n_targets"], summary["n_measured"], summary["n_skipped"]) == (5, 5, 0)
    assert summary["n_detected"] == 4 and summary["calibrated"] and summary["mag_band"] == "r"
    assert summary["primary"]["name"] == "SN 2023abc" and summary["primary"]["detected"]
    assert summary["primary"]["cutout"] == "targets/target_0001.png"
    assert len(summary["targets"]) == 5


def test_primary_outside_is_an_error(field, services, tmp_path):
    config = config_for(services, ["x=5000 y=3", "x=10 y=10"])
    with pytest.raises(TargetError) as raised:
        run(field, config, tmp_path)
    assert str(raised.value).startswith("target 1 (x=5000 y=3) is outside the 1024×1024 image")
    assert not (tmp_path / "targets.fits").exists()
    far = config_for(services, ["0.0 -45.0"])
    with pytest.raises(TargetError, match=r"target 1 \('0.0 -45.0' at RA 0.00000 Dec -45.00000"):
        run(field, far, tmp_path)


def test_secondary_outside_and_unknown_are_skipped(field, services, tmp_path):
    config = config_for(services, ["x=500 y=500", "x=5000 y=3", "M 999", "x=-0.6 y=10"])
    result = run(field, config, tmp_path)
    assert list(result.table["index"]) == [1]
    assert result.warnings == [
        "target 2 (x=5000 y=3) is outside the 1024×1024 image; this target is skipped",
        "target 3 'M 999': SIMBAD knows no object named 'M 999' (nor do NED and VizieR, asked "
        "through CDS Sesame): check the spelling, or give the coordinates; this target is skipped",
        "target 4 (x=-0.6 y=10) is outside the 1024×1024 image; this target is skipped",
    ]
    assert result.summary["n_targets"] == 4 and result.summary["n_skipped"] == 3


def test_unknown_primary_name(field, services, tmp_path):
    with pytest.raises(TargetNotFound) as raised:
        run(field, config_for(services, ["M 999"]), tmp_path)
    assert "SIMBAD knows no object named 'M 999'" in str(raised.value)
    assert "primary target" in str(raised.value)


def test_atlas_failure_never_fails(field, services, tmp_path):
    _, _, hips = services
    hips.mode = "down"
    lines = ["x=500 y=500", "x=600 y=600", "x=700 y=700"]
    result = run(field, config_for(services, lines), tmp_path)
    assert len(result.table) == 3
    assert result.warnings == [
        "atlas image (Pan-STARRS DR1 r) unavailable for x=500 y=500: cannot connect to "
        "hips2fits (connection refused)"
    ]
    for index in (1, 3):  # asked once; the others say the same without asking
        cutout = read_cutout(tmp_path / f"targets/target_{index:04d}.fits")
        assert cutout.panel("atlas").data is None
        assert cutout.panel("atlas").note == (
            "atlas unavailable: cannot connect to hips2fits (connection refused)"
        )
    assert (tmp_path / "targets/target_0003.png").exists()
    # no data for the field: recorded for each target, the service is still asked
    hips.mode = "empty"
    result = run(field, config_for(services, lines[:2]), tmp_path)
    assert len(result.warnings) == 2
    assert all("the survey has no data at this position" in w for w in result.warnings)
    # atlas panels switched off: two panels
    result = run(field, config_for(services, lines[:1], atlas_cutouts=False), tmp_path)
    cutout = read_cutout(tmp_path / "targets/target_0001.fits")
    assert [p.name for p in cutout.panels] == ["image", "mask"] and result.warnings == []


def test_without_wcs(field, services, tmp_path):
    inputs = {"wcs": None}
    with pytest.raises(TargetError, match="no astrometric solution"):
        run(field, config_for(services, ["150.1 20.0"]), tmp_path, **inputs)
    result = run(field, config_for(services, ["x=500 y=500", "150.1 20.0"]), tmp_path, **inputs)
    assert len(result.table) == 1 and np.isnan(result.table["ra"][0])
    assert "no astrometric solution" in result.warnings[0]
    cutout = read_cutout(tmp_path / "targets/target_0001.fits")
    assert cutout.panel("atlas").note == "atlas unavailable: the image has no astrometric solution"


def test_no_targets_and_no_calibration(field, services, tmp_path):
    empty = run(field, config_for(services, []), tmp_path)
    assert len(empty.table) == 0 and empty.files == [] and empty.summary["n_targets"] == 0
    assert empty.summary["primary"] is None
    result = run(field, config_for(services, ["x=500 y=500"]), tmp_path, calibration=None)
    assert "no photometric calibration" in result.warnings[0]
    assert fits.getheader(tmp_path / "targets.fits", 1)["CALIBRAT"] is False
