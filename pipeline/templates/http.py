"""HTTP for the template services: timeouts, clear errors, an optional on-disk cache."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import numpy as np
from astropy.io import fits

from pipeline.templates.errors import TemplateError, TemplateServiceError


def fetch(
    url: str, params: dict, timeout: float, cache_dir: Path | None = None, service: str = ""
) -> bytes:
    """GET ``url`` with ``params``; bytes of the answer (cached when ``cache_dir`` is set)."""
    key = hashlib.sha256((url + repr(sorted(params.items()))).encode()).hexdigest()[:32]
    cached = cache_dir / key if cache_dir is not None else None
    if cached is not None and cached.exists():
        return cached.read_bytes()
    name = service or url
    try:
        response = httpx.get(url, params=params, timeout=timeout, follow_redirects=True)
    except httpx.TimeoutException as exc:
        raise TemplateServiceError(
            f"the {name} template service did not answer within {timeout:g} s; try again later"
        ) from exc
    except httpx.HTTPError as exc:
        raise TemplateServiceError(
            f"cannot connect to the {name} template service ({exc}); try again later"
        ) from exc
    if response.status_code >= 500:
        raise TemplateServiceError(
            f"the {name} template service failed (HTTP {response.status_code}); try again later"
        )
    if response.status_code >= 400:
        raise TemplateError(
            f"the {name} template service refused the request (HTTP {response.status_code}): "
            f"{response.text[:200]}"
        )
    body = response.content
    if cached is not None:
        tmp = cached.with_suffix(".part")
        tmp.write_bytes(body)
        tmp.replace(cached)
    return body


def open_fits(body: bytes, service: str, mask: bool = False) -> tuple:
    """(data, header) of the first image HDU of a FITS answer, or TemplateError.

    An image (not a ``mask``) with no finite non-zero pixel is refused as empty.
    """
    if not body.startswith(b"SIMPLE"):
        raise TemplateError(
            f"the {service} template service did not return a FITS image "
            f"(answer starts with {body[:60]!r}); the position may be outside the survey"
        )
    with fits.open(io.BytesIO(body)) as hdul:
        for hdu in hdul:
            if hdu.data is not None and hdu.data.ndim >= 2:
                data = hdu.data.astype(float)
                while data.ndim > 2:
                    data = data[0]
                if not mask and not np.any(np.isfinite(data) & (data != 0)):
                    # what the services send outside their footprint: blank pixels
                    raise TemplateError(
                        f"the {service} template service returned an empty image: the survey "
                        "has no data at this position; choose another template source"
                    )
                return data, hdu.header.copy()
    raise TemplateError(f"the {service} template answer holds no image")
