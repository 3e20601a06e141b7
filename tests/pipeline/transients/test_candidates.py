"""Candidate names, annotation columns and the written files."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from pipeline.transients.candidates import (
    ANNOTATION_COLUMNS,
    candidate_table,
    jname,
    write_candidates,
)


def test_jname():
    # 10:00:24.123 +20:12:03.45 ; -00:30:00.06 keeps its sign
    assert jname(150.1005125, 20.2009583) == "J100024.12+201203.4"
    assert jname(0.0, -0.5000167) == "J000000.00-003000.0"


def objects() -> Table:
    table = Table(
        {
            "x": [10.0, 20.0, 30.0],
            "y": [5.0, 6.0, 7.0],
            "ra": [150.0, 150.01, 150.02],
            "dec": [20.0, 20.01, -20.02],
            "mag_calib": [18.0, 17.0, 19.0],
            "flags": [0, 2, 0],
        }
    )
    table.meta["MAGBAND"] = "r"
    return table


def test_table_and_files(tmp_path):
    table = candidate_table(objects(), np.array([1, 0]))
    assert table["object_index"].tolist() == [1, 0]
    assert set(ANNOTATION_COLUMNS) <= set(table.colnames)
    assert not table["known_variable"].any() and np.isnan(table["xmatch_sep"]).all()
    table["vsx_name"][0] = "V* Ω Cyg"  # non-ASCII text must not break the FITS file
    table["known_variable"][0] = True
    names = write_candidates(table, tmp_path, 2.5)
    assert names == [
        "candidates_simple.fits",
        "candidates_simple.csv",
        "candidates_simple.vot",
        "candidates_simple.reg",
    ]
    back = Table.read(tmp_path / "candidates_simple.fits")
    assert back["mag_calib"].tolist() == [17.0, 18.0] and back.meta["MAGBAND"] == "r"
    assert Table.read(tmp_path / "candidates_simple.vot")["vsx_name"][0] == "V* Ω Cyg"
    regions = (tmp_path / "candidates_simple.reg").read_text().splitlines()
    assert regions[3] == (
        f'circle(150.0100000,+20.0100000,2.50") # text={{{table["jname"][0]}}} color=orange'
    )
    # an empty list still gives readable files
    write_candidates(candidate_table(objects(), np.array([], int)), tmp_path, 2.5)
    assert len(Table.read(tmp_path / "candidates_simple.csv")) == 0
