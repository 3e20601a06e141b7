"""Reading observation facts from the many header dialects instruments write.

Each reader takes an astropy Header and returns a plain value (or None) plus
the keyword it came from, so the inspection step can log where every number
was found. Nothing here looks at pixels; the checks against the pixels live in
:mod:`pipeline.inspection`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle
from astropy.io import fits
from astropy.time import Time

from pipeline.filters import normalize_filter

log = logging.getLogger("skysift.header")

# Keyword lists, most specific first. These are the one place the spellings live.
EXPOSURE_KEYS = ("EXPTIME", "EXPOSURE", "EXP_TIME", "ITIME", "EXPOS", "EXPTIM")
GAIN_KEYS = ("GAIN", "EGAIN", "CCDGAIN", "CCD_GAIN", "GAINEFF", "EPADU", "GAIN_E")
READ_NOISE_KEYS = ("RDNOISE", "READNOIS", "RON", "READNOISE", "RDNOISEA", "ENOISE")
SATURATION_KEYS = ("SATURATE", "SATURAT", "SATLEVEL", "SATUR", "MAXLIN", "DATAMAX")
FILTER_KEYS = ("FILTER", "FILTER1", "FILTER2", "FILTER3", "FILTNAME", "BAND", "FILTERS", "CAMFILT")
DATE_KEYS = ("DATE-OBS", "DATEOBS", "DATE_OBS")
TIME_OF_DAY_KEYS = ("TIME-OBS", "TIMEOBS", "UT", "UTSTART", "UT-START", "UTC-OBS", "UTC", "UT-OBS")
TIME_KEYS_TAI = ("TAIHMS",)  # SDSS: TAI time of day beside a date-only DATE-OBS
SECONDS_OF_DAY_KEYS = ("TM-START",)  # ESO-MIDAS: seconds after midnight
MJD_KEYS = ("MJD-OBS", "MJD_OBS", "MJD", "MJDSTART")
JD_KEYS = ("JD", "JD-OBS", "JD_OBS", "JULDATE")
MID_TIME_KEYS = ("DATE-AVG", "MJD-AVG")  # mid-exposure times
POINTING_KEYS = (
    ("RA", "DEC"),
    ("OBJCTRA", "OBJCTDEC"),
    ("RA_OBS", "DEC_OBS"),
    ("RA-OBS", "DEC-OBS"),
    ("OBJRA", "OBJDEC"),
    ("TELRA", "TELDEC"),
    ("RA_TARG", "DEC_TARG"),
    ("RA_EXP", "DEC_EXP"),
)
_TIMESYS_SCALES = {"UTC": "utc", "UT": "utc", "TAI": "tai", "TT": "tt", "TDT": "tt", "TDB": "tdb"}


@dataclass(frozen=True)
class ObservationTime:
    """Start of the exposure.

    Attributes
    ----------
    iso : str
        UTC, ``YYYY-MM-DDThh:mm:ss.sss``.
    mjd : float
        Modified Julian Date (UTC).
    source : str
        Keyword(s) it was read from, e.g. ``"DATE-OBS+UT"``.
    date_only : bool
        True when only the calendar date was known (time of day set to 00:00).
    """

    iso: str
    mjd: float
    source: str
    date_only: bool = False


@dataclass(frozen=True)
class Section:
    """A rectangular region of the image, 0-based, end-exclusive (numpy style)."""

    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices for indexing a numpy image."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def covers(self, shape: tuple[int, int]) -> bool:
        """True if the section is the whole image."""
        return (self.x0, self.y0, self.x1, self.y1) == (0, 0, shape[1], shape[0])

    def as_fits(self) -> str:
        """The section in FITS notation (1-based, inclusive)."""
        return f"[{self.x0 + 1}:{self.x1},{self.y0 + 1}:{self.y1}]"


def to_float(value: Any) -> float | None:
    """A header value as a finite float, accepting numeric strings (``'53.9'``, ``'1D3'``)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip().replace("D", "E").replace("d", "e")
        try:
            value = float(text)
        except ValueError:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def first_value(header: fits.Header, keys: tuple[str, ...]) -> tuple[str | None, Any]:
    """The first of ``keys`` present with a non-empty value, as ``(key, value)``."""
    for key in keys:
        if key in header:
            value = header[key]
            if isinstance(value, str):
                value = value.strip()
            if value not in ("", None) and not isinstance(value, fits.card.Undefined):
                return key, value
    return None, None


def first_positive(header: fits.Header, keys: tuple[str, ...]) -> tuple[float | None, str | None]:
    """The first of ``keys`` holding a positive finite number, as ``(value, key)``."""
    for key in keys:
        if key in header:
            number = to_float(header[key])
            if number is not None and number > 0:
                return number, key
            log.info("ignoring %s = %r: not a positive number", key, header[key])
    return None, None


def read_exposure(header: fits.Header) -> tuple[float | None, str | None]:
    """Exposure time in seconds and the keyword it came from."""
    return first_positive(header, EXPOSURE_KEYS)


def read_gain(header: fits.Header) -> tuple[float | None, str | None]:
    """Gain in electrons per ADU and the keyword it came from."""
    return first_positive(header, GAIN_KEYS)


def read_read_noise(header: fits.Header) -> tuple[float | None, str | None]:
    """Read noise in electrons and the keyword it came from."""
    return first_positive(header, READ_NOISE_KEYS)


def read_saturation(header: fits.Header) -> tuple[float | None, str | None]:
    """Saturation level in ADU and the keyword it came from."""
    return first_positive(header, SATURATION_KEYS)


def _eso_filter_names(header: fits.Header) -> list[tuple[str, str]]:
    """Filter names in ESO HIERARCH cards (``ESO INS FILTn NAME``, ``ESO INS OPTI-n``)."""
    found = []
    for key in header:
        match = re.fullmatch(r"ESO INS (FILT\d*|OPTI-?\d+) NAME", key)
        if not match:
            continue
        if match.group(1).startswith("OPTI"):
            kind = str(header.get(f"ESO INS {match.group(1)} TYPE", "")).strip().upper()
            if kind != "FILTER":
                continue
        found.append((key, str(header[key]).strip()))
    return found


def read_filter(header: fits.Header) -> tuple[str | None, str | None, str | None]:
    """Filter as written and normalised, with its keyword.

    Several filter keywords (two filter wheels, ESO cards) are common; the first
    one naming a real band wins over ones saying "open"/"clear".

    Returns
    -------
    raw, name, key : str or None
        The header value, the canonical name from :func:`normalize_filter`
        (None if unknown), and the keyword.
    """
    candidates = [(key, str(header[key]).strip()) for key in FILTER_KEYS if key in header]
    candidates += _eso_filter_names(header)
    candidates = [(key, raw) for key, raw in candidates if raw]
    if not candidates:
        return None, None, None
    clear = None
    for key, raw in candidates:
        name = normalize_filter(raw)
        if name == "clear":
            clear = clear or (raw, name, key)
        elif name is not None:
            return raw, name, key
    if clear is not None:
        return clear
    key, raw = candidates[0]
    return raw, None, key


def read_binning(header: fits.Header) -> tuple[list[int] | None, str | None]:
    """On-chip binning ``[x, y]`` and the keyword(s) it came from."""
    for xkey, ykey in (
        ("XBINNING", "YBINNING"),
        ("CCDXBIN", "CCDYBIN"),
        ("BINX", "BINY"),
        ("XBIN", "YBIN"),
        ("CCDBIN1", "CCDBIN2"),
        ("COLBIN", "ROWBIN"),
    ):
        bx, by = to_float(header.get(xkey)), to_float(header.get(ykey))
        if bx and bx >= 1:
            return [int(bx), int(by if by and by >= 1 else bx)], xkey
    for key in ("CCDSUM", "BINNING", "CCDBIN", "BIN"):
        text = str(header.get(key, "")).strip()
        numbers = re.findall(r"\d+", text)
        if numbers and all(1 <= int(n) <= 64 for n in numbers[:2]):
            bx = int(numbers[0])
            by = int(numbers[1]) if len(numbers) > 1 else bx
            return [bx, by], key
    return None, None


_SECTION = re.compile(r"^\[\s*([\d*]+)\s*(?::\s*(\d+))?\s*,\s*([\d*]+)\s*(?::\s*(\d+))?\s*\]$")


def parse_section(text: Any, shape: tuple[int, int]) -> Section | None:
    """Parse an IRAF/FITS section like ``'[17:528,1:520]'`` into a :class:`Section`.

    The FITS form is 1-based and inclusive, x (columns) first; reversed ranges
    (flipped readouts) and ``*`` for a full axis are accepted. The result is
    clipped to the image.

    Returns
    -------
    Section or None
        None if the text is not a section or does not overlap the image.
    """
    match = _SECTION.match(str(text).strip())
    if not match:
        return None
    ny, nx = shape

    def axis(start: str, stop: str | None, size: int) -> tuple[int, int]:
        if start == "*":
            return 0, size
        first, last = int(start), int(stop) if stop else int(start)
        first, last = min(first, last), max(first, last)
        return max(first - 1, 0), min(last, size)

    x0, x1 = axis(match.group(1), match.group(2), nx)
    y0, y1 = axis(match.group(3), match.group(4), ny)
    if x1 <= x0 or y1 <= y0:
        return None
    return Section(x0, x1, y0, y1)


def read_data_section(
    header: fits.Header, shape: tuple[int, int]
) -> tuple[Section | None, str | None, list[str]]:
    """The useful data area from TRIMSEC (preferred) or DATASEC.

    Returns
    -------
    section, key, warnings
        ``section`` is None when no usable keyword exists; ``warnings`` lists
        keywords that were present but unusable.
    """
    problems = []
    for key in ("TRIMSEC", "DATASEC"):
        if key not in header:
            continue
        text = str(header[key])
        section = parse_section(text, shape)
        if section is None:
            problems.append(f"{key} = {text!r} is not a section inside the image; ignored")
            continue
        return section, key, problems
    return None, None, problems


def read_overscan(
    header: fits.Header, shape: tuple[int, int], data_section: Section | None
) -> Section | None:
    """The overscan (BIASSEC) region if it is still part of the image.

    A BIASSEC that overlaps the data section is a stale keyword left after
    trimming, and one covering more than a quarter of the image is not an
    overscan strip: both are ignored.
    """
    if "BIASSEC" not in header:
        return None
    section = parse_section(header["BIASSEC"], shape)
    if section is None:
        return None
    area = (section.x1 - section.x0) * (section.y1 - section.y0)
    if area > 0.25 * shape[0] * shape[1]:
        return None
    if data_section is not None and (
        section.x0 < data_section.x1
        and data_section.x0 < section.x1
        and section.y0 < data_section.y1
        and data_section.y0 < section.y1
    ):
        return None
    return section


def _parse_date(text: str) -> tuple[str, str | None] | None:
    """Split a DATE-OBS value into an ISO date and an optional time of day."""
    text = text.strip().rstrip("Zz")
    old = re.fullmatch(r"(\d{2})/(\d{2})/(\d{2})", text)  # pre-2000 FITS: DD/MM/YY
    if old:
        day, month, year = old.groups()
        return f"19{year}-{month}-{day}", None
    match = re.fullmatch(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[T ](\S+))?", text)
    if not match:
        return None
    year, month, day, clock = match.groups()
    if clock:
        # some cameras write the time with dashes: 2021-05-01T03-12-45.1
        clock = re.sub(r"^(\d{2})-(\d{2})-(\d{2})", r"\1:\2:\3", clock)
    return f"{year}-{int(month):02d}-{int(day):02d}", clock


def _parse_clock(value: Any) -> str | None:
    """Time of day as ``hh:mm:ss.sss`` from ``'hh:mm:ss'`` text, hours, or seconds of day."""
    text = str(value).strip()
    if re.search(r"\d[:\s]\d", text):
        parts = re.split(r"[:\s]+", text)
        try:
            hours, minutes = int(parts[0]), int(parts[1])
            seconds = float(parts[2]) if len(parts) > 2 else 0.0
        except (ValueError, IndexError):
            return None
        if len(parts) <= 3 and 0 <= hours < 24 and 0 <= minutes < 60 and 0 <= seconds < 61:
            return f"{hours:02d}:{minutes:02d}:{seconds:06.3f}"
        return None
    number = to_float(value)
    if number is None or not 0 <= number < 86400:
        return None
    # a bare number below 24 is hours (UT = 3.52); larger ones are seconds of the day
    return _clock_from_seconds(number * 3600.0 if number < 24 else number)


def _clock_from_seconds(seconds: float) -> str:
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    return f"{int(hours):02d}:{int(minutes):02d}:{secs:06.3f}"


def _scale(header: fits.Header) -> str:
    return _TIMESYS_SCALES.get(str(header.get("TIMESYS", "UTC")).strip().upper(), "utc")


def _as_obs_time(time: Time, source: str, date_only: bool = False) -> ObservationTime:
    utc = time.utc
    return ObservationTime(iso=utc.isot, mjd=float(utc.mjd), source=source, date_only=date_only)


def parse_time_string(text: str, scale: str = "utc") -> Time | None:
    """Parse a user-typed or header time: ISO date/time, MJD or JD number."""
    number = to_float(text)
    if number is not None:
        if 2_400_000 < number < 2_600_000:
            return Time(number, format="jd", scale=scale)
        if 0 < number < 200_000:
            return Time(number, format="mjd", scale=scale)
        return None
    parsed = _parse_date(str(text))
    if parsed is None:
        return None
    date, clock = parsed
    try:
        return Time(
            f"{date}T{clock}" if clock else date, format="isot" if clock else "iso", scale=scale
        )
    except ValueError:
        return None


def read_time(
    header: fits.Header, exposure: float | None = None
) -> tuple[ObservationTime | None, list[str]]:
    """Start of the exposure from the first usable time keywords.

    Order: DATE-OBS with a time part; DATE-OBS date plus a time-of-day keyword
    (TIME-OBS, UT, ...); MJD-OBS/MJD; JD; DATE-AVG/MJD-AVG minus half the
    exposure; finally a date-only DATE-OBS. TIMESYS (TAI, TT) is honoured.

    Returns
    -------
    time, notes
        ``time`` is None if no keyword can be parsed; ``notes`` are warnings
        for the user (date without time, keywords that disagree).
    """
    scale = _scale(header)
    notes: list[str] = []
    candidates: list[ObservationTime] = []
    date_key, date_value = first_value(header, DATE_KEYS)
    parsed = _parse_date(str(date_value)) if date_key else None
    if date_key and parsed is None:
        notes.append(f"{date_key} = {date_value!r} is not a date; ignored")
    date, clock = parsed if parsed else (None, None)
    if date and clock:
        time = _make_time(f"{date}T{clock}", scale)
        if time is not None:
            candidates.append(_as_obs_time(time, date_key))
    if date and not candidates:
        candidates.extend(_date_plus_clock(header, date_key, date, scale))
    for keys, fmt in ((MJD_KEYS, "mjd"), (JD_KEYS, "jd")):
        key, value = first_value(header, keys)
        number = to_float(value)
        if key and number is not None and number > 0:
            try:
                candidates.append(_as_obs_time(Time(number, format=fmt, scale=scale), key))
            except ValueError:
                notes.append(f"{key} = {value!r} is not a valid {fmt.upper()}; ignored")
    mid = _mid_exposure(header, scale, exposure)
    if mid is not None:
        candidates.append(mid)
    # A whole-number MJD is a date written as MJD (SAAO), not a measured time.
    exact = [c for c in candidates if not (c.source in MJD_KEYS and c.mjd == int(c.mjd))]
    if exact:
        chosen = exact[0]
        for other in exact[1:]:
            if abs(other.mjd - chosen.mjd) * 86400.0 > 60.0:
                notes.append(
                    f"time keywords disagree: {chosen.source} gives {chosen.iso}, "
                    f"{other.source} gives {other.iso}; using {chosen.source}"
                )
                break
        return chosen, notes
    if date:
        time = _make_time(date, scale)
        if time is not None:
            notes.append(
                f"{date_key} = {date_value!r} has no time of day and no other time keyword "
                "was found; using 00:00 of that date"
            )
            return _as_obs_time(time, date_key, date_only=True), notes
    if candidates:
        return candidates[0], notes
    return None, notes


def _make_time(text: str, scale: str) -> Time | None:
    try:
        return Time(text, scale=scale)
    except ValueError:
        return None


def _date_plus_clock(
    header: fits.Header, date_key: str, date: str, scale: str
) -> list[ObservationTime]:
    for keys, key_scale in ((TIME_OF_DAY_KEYS, scale), (TIME_KEYS_TAI, "tai")):
        key, value = first_value(header, keys)
        clock = _parse_clock(value) if key else None
        if clock:
            time = _make_time(f"{date}T{clock}", key_scale)
            if time is not None:
                return [_as_obs_time(time, f"{date_key}+{key}")]
    key, value = first_value(header, SECONDS_OF_DAY_KEYS)
    seconds = to_float(value)
    if key and seconds is not None and 0 <= seconds < 86400:
        time = _make_time(f"{date}T{_clock_from_seconds(seconds)}", scale)
        if time is not None:
            return [_as_obs_time(time, f"{date_key}+{key}")]
    return []


def _mid_exposure(
    header: fits.Header, scale: str, exposure: float | None
) -> ObservationTime | None:
    key, value = first_value(header, MID_TIME_KEYS)
    if key is None:
        return None
    time = parse_time_string(str(value), scale) if key == "DATE-AVG" else None
    if key == "MJD-AVG" and to_float(value):
        time = Time(to_float(value), format="mjd", scale=scale)
    if time is None:
        return None
    if exposure:
        return _as_obs_time(time - exposure / 2.0 * u.s, f"{key}-EXPTIME/2")
    return _as_obs_time(time, f"{key} (mid-exposure)")


def _parse_angle(value: Any, is_ra: bool, comment: str = "") -> float | None:
    """Degrees from a sexagesimal string (RA in hours) or a number (degrees)."""
    number = to_float(value)
    if number is not None:
        if is_ra and re.search(r"\bhours?\b|\[h\]", comment, re.IGNORECASE):
            number *= 15.0
        return number
    text = str(value).strip()
    if not text:
        return None
    try:
        if is_ra:
            unit = u.deg if re.search(r"d|°", text) else u.hourangle
            return float(Angle(text, unit=unit).deg)
        return float(Angle(text, unit=u.deg).deg)
    except (ValueError, u.UnitsError):
        return None


def read_pointing(header: fits.Header) -> tuple[float | None, float | None, str | None]:
    """Telescope pointing (RA, Dec in degrees) from the usual keyword pairs.

    Sexagesimal RA is read in hours, numeric RA in degrees (or hours when the
    comment says so). CRVAL is not used here; see the WCS check for that.
    """
    for ra_key, dec_key in POINTING_KEYS:
        if ra_key not in header or dec_key not in header:
            continue
        ra = _parse_angle(header[ra_key], True, header.comments[ra_key])
        dec = _parse_angle(header[dec_key], False)
        if ra is not None and dec is not None and 0 <= ra < 360 and -90 <= dec <= 90:
            return ra, dec, f"{ra_key}/{dec_key}"
        log.info(
            "ignoring %s/%s = %r/%r: not a sky position",
            ra_key,
            dec_key,
            header[ra_key],
            header[dec_key],
        )
    return None, None, None


def read_text(header: fits.Header, keys: tuple[str, ...]) -> str | None:
    """The first non-empty string among ``keys`` (telescope, instrument, object)."""
    key, value = first_value(header, keys)
    return str(value).strip() if key else None
