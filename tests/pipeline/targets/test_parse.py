"""Target lines: every input form, and clear errors for lines that cannot be read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.targets import TargetError, TargetsConfig, parse_target, parse_targets
from pipeline.targets.resolve import coordinate_name

RA = 150.10041666666666  # 10:00:24.1
DEC = 20.208333333333332  # +20:12:30
ANGLE_TOL = 1e-9  # deg: parsing is exact up to float rounding


@pytest.mark.parametrize(
    ("text", "ra", "dec"),
    [
        ("150.1 20.2", 150.1, 20.2),
        ("150.1, +20.2", 150.1, 20.2),
        ("150.1,-20.2", 150.1, -20.2),
        ("  0.5   -89.5 ", 0.5, -89.5),
        ("150.1d 20.2d", 150.1, 20.2),
        ("10:00:24.1 +20:12:30", RA, DEC),
        ("10:00:24.1, +20:12:30", RA, DEC),
        ("10 00 24.1 +20 12 30", RA, DEC),
        ("10 00 24.1 20 12 30", RA, DEC),
        ("10 00 24.1, 20 12 30", RA, DEC),
        ("10h00m24.1s +20d12m30s", RA, DEC),
        ("100024.1+201230", RA, DEC),
        ("100024.1 +201230", RA, DEC),
        ("100024.1, 201230", RA, DEC),
        ("10:00:24.1 -00:30:00", RA, -0.5),
        ("10 00 24.1 -00 30 00", RA, -0.5),
        ("10 00 +20 12", 150.0, 20.2),
    ],
)
def test_coordinates(text, ra, dec):
    spec = parse_target(text)
    assert spec.kind == "sky"
    assert spec.ra == pytest.approx(ra, abs=ANGLE_TOL)
    assert spec.dec == pytest.approx(dec, abs=ANGLE_TOL)
    assert spec.text == text.strip()


@pytest.mark.parametrize(
    ("text", "x", "y"),
    [
        ("x=100 y=200", 100.0, 200.0),
        ("x=100.5, y=-3", 100.5, -3.0),
        ("X = 7 Y = 8", 7.0, 8.0),
        ("x: 12.25; y: 4", 12.25, 4.0),
    ],
)
def test_pixel_positions(text, x, y):
    spec = parse_target(text)
    assert (spec.kind, spec.x, spec.y) == ("pixel", x, y)


@pytest.mark.parametrize(
    ("text", "prefix", "designation"),
    [
        ("2024abc", None, "2024abc"),
        ("SN 2024abc", "SN", "2024abc"),
        ("AT2024abc", "AT", "2024abc"),
        ("at 2024ABC", "AT", "2024abc"),
        ("SN 1987A", "SN", "1987A"),
        ("sn1987a", "SN", "1987A"),
        ("TDE 2019dsg", "TDE", "2019dsg"),
        ("2023ixf", None, "2023ixf"),
    ],
)
def test_tns_names(text, prefix, designation):
    spec = parse_target(text)
    assert spec.kind == "name"
    assert (spec.tns_prefix, spec.tns_designation) == (prefix, designation)
    assert spec.name == text.strip()


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("M 31", "M 31"),
        ("m31", "m31"),
        ("NGC  1234", "NGC 1234"),
        ("3C 273", "3C 273"),
        ("Vega", "Vega"),
        ("SDSS J100024.10+201230.0", "SDSS J100024.10+201230.0"),
    ],
)
def test_simbad_names(text, name):
    spec = parse_target(text)
    assert spec.kind == "name"
    assert spec.name == name
    assert spec.tns_designation is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("400 20", "RA 400° is outside 0–360°"),
        ("150 95", "Dec 95° is outside"),
        ("150", "cannot split the line into RA and Dec"),
        ("1 2 3", "cannot split"),
        ("10 61 00 +20 00 00", "minute"),
        ("10:00:60 +20:00:00", "second"),
        ("x=100", "needs both x= and y="),
    ],
)
def test_unreadable_lines(text, words):
    with pytest.raises(TargetError) as raised:
        parse_target(text, index=3)
    message = str(raised.value)
    assert message.startswith(f"target 3 {text!r}")
    assert words in message
    assert "x=100 y=200" in message  # says what would be accepted
    assert isinstance(raised.value, ValueError)


def test_list_order_primary_comments_and_blank_lines():
    specs = parse_targets("# my targets\nM 31\n\n  150.1 20.2  \nx=1 y=2\n")
    assert [s.index for s in specs] == [1, 2, 3]
    assert [s.kind for s in specs] == ["name", "sky", "pixel"]
    assert specs[0].primary and not specs[1].primary
    assert specs[1].describe() == "target 2 '150.1 20.2'"
    # list items may themselves hold several lines (a text area sent as one item)
    assert [s.text for s in parse_targets(["M 31\nM 33", "2024abc"])] == ["M 31", "M 33", "2024abc"]


def test_config_splits_and_validates_targets():
    config = TargetsConfig(targets="M 31\n  \n150.1 20.2")
    assert config.targets == ["M 31", "150.1 20.2"]
    assert TargetsConfig().targets == []
    assert not TargetsConfig().has_tns_bot
    with pytest.raises(ValidationError, match="target 2 '400 20'"):
        TargetsConfig(targets=["M 31", "400 20"])
    with pytest.raises(ValidationError, match="not an http"):
        TargetsConfig(sesame_url="cds.unistra.fr/cgi-bin/nph-sesame")
    bot = TargetsConfig(
        tns_bot_id=" 123 ", tns_bot_name="bot", tns_api_key="key", tns_url="http://x/"
    )
    assert bot.has_tns_bot and bot.tns_bot_id == "123" and bot.tns_url == "http://x"
    assert not TargetsConfig(tns_bot_id="1", tns_bot_name="bot", tns_api_key="").has_tns_bot


def test_coordinate_names():
    assert coordinate_name(RA, DEC) == "J100024.10+201230.0"
    assert coordinate_name(RA, -0.5) == "J100024.10-003000.0"
    assert coordinate_name(359.99999999, 0.0) == "J000000.00+000000.0"
