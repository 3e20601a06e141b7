"""Target lines as users type them: coordinates, pixel positions, SIMBAD or TNS names.

One target per line; the first is the primary target. A line is read as, in this order:

* a pixel position ``x=1021.5 y=377`` (also ``x=1021.5, y=377``, ``X: 10 Y: 20``);
  0-based pixel coordinates, like every table SkySift writes;
* a TNS designation: a year and one to four letters, with or without a TNS prefix
  (``2024abc``, ``SN 2024abc``, ``AT2024abc``, ``SN 1987A``);
* sky coordinates (ICRS): two decimal numbers in degrees (``150.1 20.2``,
  ``150.1, +20.2``), or sexagesimal RA in hours and Dec in degrees with any of the
  usual separators (``10:00:24.1 +20:12:30``, ``10 00 24.1 +20 12 30``,
  ``10h00m24.1s +20d12m30s``, ``10:00:24.1, -00:30:00``), or without separators
  (``100024.1+201230``, ``100024.1 +201230.5``);
* anything else: a name for SIMBAD (through CDS Sesame), e.g. ``M 31``, ``NGC 1234``.

Empty lines and lines starting with ``#`` are ignored. A line that looks like
coordinates but cannot be read (RA 400°, 61 minutes, a single number) is an error
with a message that says what is wrong, rather than a name sent to SIMBAD.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from astropy import units as u
from astropy.coordinates import Angle

from pipeline.targets.errors import TargetError

TargetKind = Literal["sky", "pixel", "name"]

# Prefixes the TNS gives its objects (AT until classified, SN after; rarer classes too).
TNS_PREFIXES = ("AT", "SN", "TDE", "KN", "LRN", "LBV", "ILRT")

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_PIXEL = re.compile(
    rf"^\s*x\s*[=:]\s*({_NUMBER})\s*[,;]?\s*y\s*[=:]\s*({_NUMBER})\s*$", re.IGNORECASE
)
_TNS = re.compile(
    rf"^\s*(?:({'|'.join(TNS_PREFIXES)})\s*)?((?:18|19|20)\d\d)([a-z]{{1,4}})\s*$",
    re.IGNORECASE,
)
# Only characters coordinates are written with: then the line is never a name.
_COORDINATE_CHARS = re.compile(r"^[+\-.\d][\s\d+\-.:,hmsd°'\"′″]*$")
_DECIMAL = re.compile(rf"^{_NUMBER}$")
_COMPACT_RA = re.compile(r"^(\d\d)(\d\d)(\d\d(?:\.\d*)?)$")
_COMPACT_DEC = re.compile(r"^([+-]?)(\d\d)(\d\d)(\d\d(?:\.\d*)?)$")
_COMPACT_PAIR = re.compile(r"^(\d{6}(?:\.\d*)?)([+-]\d{6}(?:\.\d*)?)$")


@dataclass(frozen=True)
class TargetSpec:
    """One parsed target line.

    Attributes
    ----------
    index : int
        1-based position in the list of targets; 1 is the primary target.
    text : str
        The line as given (stripped).
    kind : {"sky", "pixel", "name"}
        Coordinates, a pixel position, or a name to resolve.
    ra, dec : float or None
        Degrees (ICRS), for ``kind == "sky"``.
    x, y : float or None
        0-based pixels, for ``kind == "pixel"``.
    name : str or None
        The name to resolve, for ``kind == "name"``.
    tns_designation : str or None
        ``"2024abc"`` when the name is a TNS designation (the TNS is asked first).
    tns_prefix : str or None
        ``"SN"``, ``"AT"`` ... when the user wrote one.
    """

    index: int
    text: str
    kind: TargetKind
    ra: float | None = None
    dec: float | None = None
    x: float | None = None
    y: float | None = None
    name: str | None = None
    tns_designation: str | None = None
    tns_prefix: str | None = None

    @property
    def primary(self) -> bool:
        return self.index == 1

    def describe(self) -> str:
        """``target 2 'M 31'``: how messages refer to this target."""
        return f"target {self.index} {self.text!r}"


def _fail(index: int, text: str, reason: str) -> TargetError:
    return TargetError(
        f"target {index} {text!r}: {reason}. Give a name (M 31, SN 2024abc), coordinates "
        "(150.1 20.2 or 10:00:24.1 +20:12:30) or a pixel position (x=100 y=200)"
    )


def _split_parts(text: str) -> tuple[str, str] | None:
    """RA and Dec parts of a coordinate line, or None if it has no two-part shape."""
    if "," in text:
        parts = [p.strip() for p in text.split(",")]
        return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None
    compact = _COMPACT_PAIR.match(text.replace(" ", ""))
    if compact and len(text.split()) <= 2:
        return compact[1], compact[2]
    tokens = text.split()
    if len(tokens) == 2:
        return tokens[0], tokens[1]
    signed = [i for i, token in enumerate(tokens) if i > 0 and token[0] in "+-"]
    if signed:  # "10 00 24.1 +20 12": the signed token starts the declination
        i = signed[0]
        return " ".join(tokens[:i]), " ".join(tokens[i:])
    if len(tokens) in (4, 6):  # "h m s d m s" or "h m d m"
        half = len(tokens) // 2
        return " ".join(tokens[:half]), " ".join(tokens[half:])
    return None


def _expand_compact(part: str, what: str) -> str:
    """``100024.1`` → ``10 00 24.1`` (RA), ``+201230`` → ``+20 12 30`` (Dec)."""
    if what == "RA":
        match = _COMPACT_RA.match(part)
        return f"{match[1]} {match[2]} {match[3]}" if match else part
    match = _COMPACT_DEC.match(part)
    return f"{match[1]}{match[2]} {match[3]} {match[4]}" if match else part


def _angle(part: str, unit: u.UnitBase, what: str) -> float:
    """Degrees of one sexagesimal or compact part (RA in hours unless it says ``d``)."""
    text = _expand_compact(part, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # 60 seconds etc. are errors, not warnings
            return float(Angle(text, unit=unit).deg)
    except Exception as exc:  # astropy raises several kinds for malformed angles
        reason = re.split(r";|\.\s", str(exc))[0]
        raise ValueError(f"cannot read the {what} {part!r} ({reason})") from None


def parse_coordinates(text: str) -> tuple[float, float]:
    """RA, Dec in degrees from a coordinate line (see the module docstring).

    Raises
    ------
    ValueError
        With a message saying what is wrong (one number, RA beyond 360°, 61 minutes ...).
    """
    parts = _split_parts(text.strip())
    if parts is None:
        raise ValueError("cannot split the line into RA and Dec")
    ra_text, dec_text = parts
    compact = _COMPACT_RA.match(ra_text) or _COMPACT_DEC.match(dec_text)
    if _DECIMAL.match(ra_text) and _DECIMAL.match(dec_text) and not compact:
        ra, dec = float(ra_text), float(dec_text)
    else:
        ra = _angle(ra_text, u.hourangle, "RA")
        dec = _angle(dec_text, u.deg, "Dec")
    if not 0.0 <= ra < 360.0:
        raise ValueError(f"RA {ra:g}° is outside 0–360°")
    if not -90.0 <= dec <= 90.0:
        raise ValueError(f"Dec {dec:g}° is outside −90…+90°")
    return ra, dec


def tns_designation(text: str) -> tuple[str | None, str] | None:
    """(prefix or None, designation) if ``text`` is a TNS name, e.g. ``("SN", "2024abc")``.

    The TNS writes designations with one capital (``1987A``) or two to four lower-case
    letters (``2024abc``); other cases are normalised to that.
    """
    match = _TNS.match(text)
    if not match:
        return None
    prefix = match[1].upper() if match[1] else None
    letters = match[3].upper() if len(match[3]) == 1 else match[3].lower()
    return prefix, match[2] + letters


def parse_target(text: str, index: int = 1) -> TargetSpec:
    """Parse one target line.

    Parameters
    ----------
    text : str
        The line.
    index : int
        Its 1-based position in the list (1 = primary), for messages.

    Raises
    ------
    TargetError
        For an empty line or one that looks like coordinates but cannot be read.
    """
    line = text.strip()
    if not line:
        raise _fail(index, text, "the line is empty")
    pixel = _PIXEL.match(line)
    if pixel:
        return TargetSpec(index, line, "pixel", x=float(pixel[1]), y=float(pixel[2]))
    tns = tns_designation(line)
    if tns is not None:
        prefix, designation = tns
        return TargetSpec(
            index, line, "name", name=line, tns_designation=designation, tns_prefix=prefix
        )
    if _COORDINATE_CHARS.match(line) and any(ch.isdigit() for ch in line):
        try:
            ra, dec = parse_coordinates(line)
        except ValueError as exc:
            raise _fail(index, line, f"looks like coordinates, but {exc}") from None
        return TargetSpec(index, line, "sky", ra=ra, dec=dec)
    if re.match(r"^\s*[xy]\s*[=:]", line, re.IGNORECASE):
        raise _fail(index, line, "a pixel position needs both x= and y= with numbers")
    return TargetSpec(index, line, "name", name=" ".join(line.split()))


def target_lines(targets: str | Iterable[str]) -> list[str]:
    """Non-empty, non-comment lines of a text block or a list of lines (a list item may
    itself hold several lines, as a form's text area sends them)."""
    chunks = [targets] if isinstance(targets, str) else list(targets)
    lines = []
    for chunk in chunks:
        for line in str(chunk).splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def parse_targets(targets: str | Iterable[str]) -> list[TargetSpec]:
    """Parse every target line (see :func:`target_lines`); the first is the primary.

    Raises
    ------
    TargetError
        Naming the first line that cannot be read.
    """
    return [parse_target(line, i) for i, line in enumerate(target_lines(targets), start=1)]
