"""``skysift process`` end to end on a simulated sky: files, result keys, numbers vs truth."""

from __future__ import annotations

import json

import pytest
from astropy.table import Table

from pipeline.simulate import simulate_sky, write_simulation
from web.cli import main


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sky")
    sky = simulate_sky(size=1024, seed=5)
    return sky, write_simulation(sky, folder)


def test_process_writes_documented_outputs(simulated, tmp_path, capsys):
    sky, paths = simulated
    out = tmp_path / "out"
    code = main(
        [
            "process",
            str(paths["image"]),
            "--out",
            str(out),
            "--catalog",
            str(paths["catalog"]),
            "--catalog-name",
            "ps1",
            "--set",
            "photometry.sn=5",
        ]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    inspect, photometry = result["inspect"], result["photometry"]
    assert inspect["gain"] == pytest.approx(sky.truth.gain)
    assert inspect["filter"] == "r"
    assert inspect["saturation"] == pytest.approx(sky.truth.saturation, rel=0.01)
    # tolerances: FWHM 5 %, colour term 0.02, WCS RMS below 0.3″ (0.8″ pixels), limit 0.15 mag
    assert photometry["fwhm"] == pytest.approx(sky.truth.fwhm_median, rel=0.05)
    assert photometry["color_term"] == pytest.approx(sky.truth.color_term, abs=0.02)
    assert photometry["wcs_rms_arcsec"] < 0.3 and photometry["wcs_matches"] > 100
    assert photometry["limit_sn5"] == pytest.approx(sky.truth.limit_sn5, abs=0.15)
    assert photometry["zp_err"] < 0.01 and photometry["n_objects"] > 200
    objects = Table.read(out / "objects.fits")
    for column in (
        "x",
        "y",
        "ra",
        "dec",
        "flux",
        "fluxerr",
        "mag",
        "magerr",
        "fwhm",
        "flags",
        "mag_calib",
        "mag_calib_err",
    ):
        assert column in objects.colnames, column
    for name in ("mask.fits", "image.wcs", "calibration.json", "calibration.png"):
        assert (out / name).is_file(), name


def test_process_measures_targets(simulated, tmp_path):
    sky, paths = simulated
    isolated = sky.truth.transients[~sky.truth.transients["on_galaxy"]][0]
    out = tmp_path / "out"
    code = main(
        [
            "process",
            str(paths["image"]),
            "--out",
            str(out),
            "--catalog",
            str(paths["catalog"]),
            "--catalog-name",
            "ps1",
            "--target",
            f"{isolated['ra']} {isolated['dec']}",
            "--target",
            "x=20 y=1000",
            "--set",
            "photometry.atlas_cutouts=false",
        ]
    )
    assert code == 0
    targets = Table.read(out / "targets.fits")
    primary, empty = targets[0], targets[1]
    # a transient of g-r = 0 calibrated with the median star colour: allow 3σ + 0.05 mag
    assert primary["detected"]
    assert abs(primary["mag_calib"] - isolated["mag"]) < 3 * primary["mag_calib_err"] + 0.05
    assert not empty["detected"]
    assert abs(empty["mag_limit"] - sky.truth.limit_sn5) < 0.3


def test_process_says_why_a_step_cannot_run(simulated, tmp_path, capsys):
    _sky, paths = simulated
    assert (
        main(
            [
                "process",
                str(paths["image"]),
                "--out",
                str(tmp_path / "a"),
                "--steps",
                "inspect,nosuchstep",
            ]
        )
        == 1
    )
    assert "unknown steps" in capsys.readouterr().err
    assert (
        main(
            [
                "process",
                str(paths["image"]),
                "--out",
                str(tmp_path / "b"),
                "--set",
                "photometry.detect_thresh=-1",
            ]
        )
        == 1
    )
    assert "detect_thresh" in capsys.readouterr().err
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"SIMPLE  =                    T" + b" " * 100)
    assert main(["process", str(broken), "--out", str(tmp_path / "c")]) == 1
    assert "broken.fits" in capsys.readouterr().err
    # a catalogue with no star in the field: the step fails and says so
    empty = tmp_path / "empty.fits"
    Table.read(paths["catalog"])[:0].write(empty)
    assert (
        main(
            [
                "process",
                str(paths["image"]),
                "--out",
                str(tmp_path / "d"),
                "--catalog",
                str(empty),
                "--catalog-name",
                "ps1",
            ]
        )
        == 1
    )
    error = capsys.readouterr().err
    assert "photometry" in error and "catalogue" in error
    assert json.loads((tmp_path / "d" / "result.json").read_text())["error"]["step"] == "photometry"
