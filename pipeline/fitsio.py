"""Reading uploaded or archived FITS files robustly, and writing the task image.

Users upload whatever their camera or pipeline wrote: plain, gzip/bzip2
compressed or tile-compressed (``.fz``) files, multi-extension files whose
image is not in the primary HDU, scaled integers, degenerate 3-D cubes, and
sometimes files that are not FITS at all or were cut short by a failed
transfer. This module turns all of them into one float32 2-D array and its
header, or a :class:`FitsInputError` that says what is wrong.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

MIN_IMAGE_SIDE = 16  # pixels; smaller images cannot hold a PSF and its background

# Header card recording the pixel type of the uploaded file, since the task image
# is always float32 and later checks (raw-looking 16-bit frames) need the original.
ORIGINAL_DTYPE_KEY = "ORIGDTYP"

_BITPIX_DTYPES = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32", -64: "float64"}

# Keywords that describe the storage of the data, not the observation; they must
# not be copied onto a float32 image (a stale BZERO would rescale the pixels).
_STRUCTURAL = frozenset(
    {
        "SIMPLE",
        "XTENSION",
        "BITPIX",
        "NAXIS",
        "EXTEND",
        "PCOUNT",
        "GCOUNT",
        "GROUPS",
        "BSCALE",
        "BZERO",
        "BLANK",
        "CHECKSUM",
        "DATASUM",
        "EXTNAME",
        "EXTVER",
        "EXTLEVEL",
        "INHERIT",
        "THEAP",
        "TFIELDS",
        "END",
    }
)
_STRUCTURAL_PREFIXES = ("NAXIS", "ZNAXIS", "ZTILE", "ZNAME", "ZVAL", "TTYPE", "TFORM", "TUNIT")
_COMPRESSION_KEYS = frozenset(
    {
        "ZIMAGE",
        "ZBITPIX",
        "ZCMPTYPE",
        "ZQUANTIZ",
        "ZDITHER0",
        "ZSIMPLE",
        "ZEXTEND",
        "ZBLANK",
        "ZSCALE",
        "ZZERO",
        "ZHECKSUM",
        "ZDATASUM",
        "ZTENSION",
        "ZPCOUNT",
        "ZGCOUNT",
        "ZMASKCMP",
        "FZALGOR",
        "FZQVALUE",
        "FZQMETHD",
        "FZDTHRSD",
        "FZTILE",
    }
)

# File signatures, to tell "not a FITS file" apart from "broken FITS file".
_COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2"}
_OTHER_FORMATS = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"II*\x00": "a TIFF image (or camera raw file)",
    b"MM\x00*": "a TIFF image (or camera raw file)",
    b"XISF0100": "an XISF (PixInsight) image",
    b"PK\x03\x04": "a ZIP archive",
    b"\xfd7zXZ": "an xz-compressed file",
    b"%PDF": "a PDF document",
}
_FITS_START = b"SIMPLE  ="
_READ_ERRORS = (ValueError, TypeError, EOFError, OSError, zlib.error, IndexError)


class FitsInputError(ValueError):
    """The file cannot be used as an image; the message says why and what to do."""


def _compression_of(head: bytes) -> str | None:
    for magic, name in _COMPRESSED_MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def _read_start(path: Path, compression: str | None, size: int = 80) -> bytes:
    opener = {"gzip": gzip.open, "bzip2": bz2.open}.get(compression or "", open)
    try:
        with opener(path, "rb") as stream:
            return stream.read(size)
    except EOFError as exc:
        raise FitsInputError(_truncated_message(path)) from exc
    except OSError as exc:
        raise FitsInputError(
            f"{path.name}: the {compression} stream is corrupt ({exc}); upload the file again"
        ) from exc


def _check_signature(path: Path) -> str | None:
    """Raise unless ``path`` starts like a FITS file; return its stream compression."""
    if not path.is_file():
        raise FitsInputError(f"{path.name}: file not found")
    with open(path, "rb") as stream:
        head = stream.read(16)
    if not head:
        raise FitsInputError(f"{path.name}: the file is empty; upload it again")
    compression = _compression_of(head)
    start = _read_start(path, compression) if compression else head
    if not start.startswith(_FITS_START):
        for magic, what in _OTHER_FORMATS.items():
            if start.startswith(magic):
                raise FitsInputError(
                    f"{path.name} is {what}, not a FITS file; upload the FITS image "
                    "written by your camera or pipeline"
                )
        raise FitsInputError(
            f"{path.name} is not a FITS file (it does not start with a SIMPLE card); "
            "upload a FITS image (.fits, .fit, .fts, optionally .gz, .bz2 or .fz)"
        )
    return compression


def _decompress(path: Path, compression: str) -> bytes:
    """The whole decompressed stream (one pass; astropy would seek back and forth in it)."""
    opener = gzip.open if compression == "gzip" else bz2.open
    try:
        with opener(path, "rb") as stream:
            return stream.read()
    except EOFError as exc:
        raise FitsInputError(_truncated_message(path)) from exc
    except (OSError, zlib.error) as exc:
        raise FitsInputError(
            f"{path.name}: the {compression} stream is corrupt ({exc}); upload the file again"
        ) from exc


def _truncated_message(path: Path, detail: str = "") -> str:
    extra = f" ({detail})" if detail else ""
    return (
        f"{path.name} is truncated: it ends before the data its header announces{extra}. "
        "The upload or download was probably interrupted; transfer the file again"
    )


def _open(path: Path) -> tuple[fits.HDUList, int]:
    """Open ``path`` (headers only); return the HDU list and the FITS byte count."""
    compression = _check_signature(path)
    source: Path | io.BytesIO = path
    size = path.stat().st_size
    if compression:
        raw = _decompress(path, compression)
        source, size = io.BytesIO(raw), len(raw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(source, memmap=False, lazy_load_hdus=False)
    except _READ_ERRORS as exc:
        if size < 2880:
            raise FitsInputError(_truncated_message(path, "the header is incomplete")) from exc
        raise FitsInputError(f"{path.name}: corrupt FITS file ({exc})") from exc
    return hdul, size


def _header_shape(hdu: Any) -> tuple[int, ...] | None:
    """Numpy-order shape of an image HDU from its header, or None for non-images."""
    if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
        return None
    header = hdu.header
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return None
    return tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(naxis, 0, -1))


def _squeezed(shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The 2-D shape after dropping length-1 axes of a degenerate cube, or None."""
    if shape is None:
        return None
    if len(shape) > 2:
        shape = tuple(s for s in shape if s != 1)
    return shape if len(shape) == 2 and min(shape) > 0 else None


def _kind(hdu: Any) -> str:
    if isinstance(hdu, fits.CompImageHDU):
        return "compressed image"
    if isinstance(hdu, fits.BinTableHDU):
        return "binary table"
    if isinstance(hdu, fits.TableHDU):
        return "ASCII table"
    if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU):
        return "image" if _header_shape(hdu) else "empty"
    return type(hdu).__name__


def _describe(hdul: fits.HDUList) -> str:
    parts = []
    for index, hdu in enumerate(hdul):
        shape = _header_shape(hdu)
        size = "×".join(str(s) for s in reversed(shape)) if shape else ""
        parts.append(f"{index} {hdu.name or '-'} ({_kind(hdu)}{' ' + size if size else ''})")
    return "; ".join(parts)


def _select_hdu(hdul: fits.HDUList, hdu: int | str | None, name: str) -> int:
    """Index of the image HDU to use: the requested one, or the first usable 2-D image."""
    if hdu is not None:
        if isinstance(hdu, str):
            names = [h.name.upper() for h in hdul]
            if hdu.upper() not in names:
                raise FitsInputError(
                    f"{name}: there is no HDU named {hdu!r}; the file holds: {_describe(hdul)}"
                )
            index = names.index(hdu.upper())
        else:
            index = int(hdu)
            if not 0 <= index < len(hdul):
                raise FitsInputError(
                    f"{name}: HDU {index} is out of range: the file has {len(hdul)} HDU(s), "
                    f"numbered 0 to {len(hdul) - 1} ({_describe(hdul)})"
                )
        shape = _squeezed(_header_shape(hdul[index]))
        if shape is None:
            raise FitsInputError(
                f"{name}: HDU {index} ({_kind(hdul[index])}) is not a 2-D image; "
                f"the file holds: {_describe(hdul)}"
            )
        _check_size(shape, name, index)
        return index
    images = [i for i, h in enumerate(hdul) if _squeezed(_header_shape(h)) is not None]
    if not images:
        raise FitsInputError(
            f"{name} holds no 2-D image (HDUs: {_describe(hdul)}); "
            "upload a file that contains the image itself"
        )
    for index in images:
        if min(_squeezed(_header_shape(hdul[index]))) >= MIN_IMAGE_SIDE:
            return index
    _check_size(_squeezed(_header_shape(hdul[images[0]])), name, images[0])
    return images[0]


def _check_size(shape: tuple[int, ...], name: str, index: int) -> None:
    if min(shape) < MIN_IMAGE_SIDE:
        raise FitsInputError(
            f"{name}: the image in HDU {index} is only {shape[1]}×{shape[0]} pixels; "
            f"at least {MIN_IMAGE_SIDE} pixels per side are needed"
        )


def _expected_data_bytes(header: fits.Header) -> int:
    """Bytes of data (without the padding to 2880) that an image header announces."""
    naxis = int(header.get("NAXIS", 0))
    count = int(np.prod([int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1)]))
    bits = abs(int(header.get("BITPIX", 8)))
    return (bits // 8) * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + count)


def _check_complete(hdul: fits.HDUList, index: int, path: Path, actual: int) -> None:
    """Compare the byte count with what the header announces (cheap: no pixel read)."""
    info = hdul.fileinfo(index)
    hdu = hdul[index]
    if isinstance(hdu, fits.CompImageHDU):
        # The table size is only known padded: anything short of the last block is missing.
        needed = info["datLoc"] + info["datSpan"] - 2879
    else:
        needed = info["datLoc"] + _expected_data_bytes(hdu.header)
    if actual < needed:
        raise FitsInputError(
            _truncated_message(path, f"{actual} bytes on disk, at least {needed} expected")
        )


def _read_pixels(hdu: Any, path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = hdu.data
    except _READ_ERRORS as exc:
        raise FitsInputError(
            f"{path.name}: the pixel data cannot be read ({exc}); the file is probably "
            "truncated or corrupt, transfer it again"
        ) from exc
    if data is None:
        raise FitsInputError(f"{path.name}: HDU {hdu.name} has no pixel data")
    data = np.asarray(data)
    if data.ndim > 2:
        data = data.reshape(_squeezed(data.shape))
    return np.ascontiguousarray(data, dtype=np.float32)


def original_dtype(header: fits.Header) -> str:
    """Pixel type a header describes, e.g. ``uint16``, ``int16 (scaled)``, ``float32``."""
    if ORIGINAL_DTYPE_KEY in header:
        return str(header[ORIGINAL_DTYPE_KEY])
    bitpix = int(header.get("BITPIX", -32))
    name = _BITPIX_DTYPES.get(bitpix, f"BITPIX {bitpix}")
    if bitpix <= 8:
        return name
    bscale = float(header.get("BSCALE", 1.0))
    bzero = float(header.get("BZERO", 0.0))
    if bitpix > 8 and bscale == 1.0 and bzero == 2.0 ** (bitpix - 1):
        return "u" + name
    if bscale != 1.0 or bzero != 0.0:
        return f"{name} (scaled)"
    return name


def clean_header(header: fits.Header, primary: fits.Header | None = None) -> fits.Header:
    """Observation header without storage keywords, merged with the primary header.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Header of the image HDU.
    primary : astropy.io.fits.Header, optional
        Primary header of a multi-extension file; its cards fill in keywords the
        extension lacks (DATE-OBS, FILTER ... often live only there).

    Returns
    -------
    astropy.io.fits.Header
        A new header; cards astropy cannot write are dropped.
    """
    out = fits.Header()
    out[ORIGINAL_DTYPE_KEY] = (original_dtype(header), "pixel type of the uploaded file")
    sources = [header] if primary is None else [header, primary]
    for source_index, source in enumerate(sources):
        for card in source.cards:
            key = card.keyword
            if _is_structural(key) or (key in out and key not in ("COMMENT", "HISTORY", "")):
                continue
            if source_index and key in ("COMMENT", "HISTORY", ""):
                continue  # the primary's commentary is rarely about the image
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    card.verify("silentfix")
                    str(card)  # formatting raises for cards that cannot be written
                out.append(card, end=True)
            except (ValueError, fits.VerifyError):
                continue
    return out


def _is_structural(key: str) -> bool:
    return (
        key in _STRUCTURAL
        or key in _COMPRESSION_KEYS
        or (key.startswith(_STRUCTURAL_PREFIXES) and key[-1:].isdigit())
    )


def load_image(path: str | os.PathLike, hdu: int | str | None = None) -> tuple[np.ndarray, Any]:
    """Load the 2-D image of a FITS file as float32 with its (cleaned) header.

    Parameters
    ----------
    path : str or os.PathLike
        FITS file, optionally gzip/bzip2 compressed or tile-compressed.
    hdu : int or str, optional
        HDU index or EXTNAME; by default the first HDU holding a 2-D image of
        at least :data:`MIN_IMAGE_SIDE` pixels per side.

    Returns
    -------
    data : numpy.ndarray
        Native-endian float32 2-D array, BSCALE/BZERO applied, BLANK as NaN.
    header : astropy.io.fits.Header
        Header from :func:`clean_header`, with the original pixel type recorded.

    Raises
    ------
    FitsInputError
        Not a FITS file, truncated, no 2-D image, image too small, bad ``hdu``.
    """
    path = Path(path)
    hdul, size = _open(path)
    with hdul:
        index = _select_hdu(hdul, hdu, path.name)
        _check_complete(hdul, index, path, size)
        # Clean the header first: reading scaled pixels makes astropy rewrite BITPIX.
        primary = hdul[0].header if index > 0 else None
        header = clean_header(hdul[index].header, primary)
        data = _read_pixels(hdul[index], path)
    return data, header


def list_hdus(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Describe every HDU of a FITS file without reading pixels (for a file browser).

    Returns
    -------
    list of dict
        One dict per HDU with ``index``, ``name``, ``type`` (``image``,
        ``compressed image``, ``binary table``, ``ASCII table``, ``empty``),
        ``shape`` (numpy order, ``[ny, nx]`` for images, ``[nrows]`` for
        tables, ``[]`` if empty), ``dtype``, ``usable`` (a 2-D image SkySift
        can load) and ``header`` (the header as text, one card per line).
    """
    path = Path(path)
    hdul, _ = _open(path)
    rows = []
    with hdul:
        for index, hdu in enumerate(hdul):
            shape = _header_shape(hdu)
            if isinstance(hdu, fits.BinTableHDU | fits.TableHDU) and not isinstance(
                hdu, fits.CompImageHDU
            ):
                shape = (int(hdu.header.get("NAXIS2", 0)),)
                dtype = "table"
            else:
                dtype = original_dtype(hdu.header) if shape else ""
            squeezed = _squeezed(_header_shape(hdu))
            rows.append(
                {
                    "index": index,
                    "name": hdu.name,
                    "type": _kind(hdu),
                    "shape": list(shape or ()),
                    "dtype": dtype,
                    "usable": bool(squeezed and min(squeezed) >= MIN_IMAGE_SIDE),
                    "header": hdu.header.tostring(sep="\n", endcard=False, padding=False),
                }
            )
    return rows


def write_task_image(
    src: str | os.PathLike, dest: str | os.PathLike, hdu: int | str | None = None
) -> fits.Header:
    """Validate ``src`` and write its image as a single-HDU float32 FITS file.

    The file is written under a temporary name in the destination folder and
    renamed into place, so ``dest`` either does not exist or is complete.

    Parameters
    ----------
    src, dest : str or os.PathLike
        Uploaded file and the task's ``image.fits``.
    hdu : int or str, optional
        Which HDU to take (see :func:`load_image`).

    Returns
    -------
    astropy.io.fits.Header
        The header written to ``dest``.

    Raises
    ------
    FitsInputError
        As :func:`load_image`.
    """
    data, header = load_image(src, hdu)
    out = fits.PrimaryHDU(data=data, header=header)
    write_atomic(out, dest)
    return out.header


def write_atomic(hdu: fits.PrimaryHDU | fits.HDUList, dest: str | os.PathLike) -> None:
    """Write a FITS file under a temporary name beside ``dest``, then rename it into place.

    Readers therefore see either the previous file or the complete new one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(handle)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdu.writeto(tmp_name, overwrite=True, output_verify="silentfix")
        with open(tmp_name, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp_name, dest)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
