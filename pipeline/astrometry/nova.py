"""Client of the nova.astrometry.net JSON API (blind solving as a web service).

The protocol (https://nova.astrometry.net/api_help): POST ``api/login`` with
the API key → a session; POST ``api/upload`` with the source list (``x``,
``y`` lists in the JSON, 1-based FITS pixels, or a FITS xylist as a
multipart file) and hints → a submission id; poll ``api/submissions/<id>``
until a job appears, then ``api/jobs/<id>`` until it says ``success`` or
``failure``; download ``wcs_file/<job id>``. Every request carries a
``request-json`` form field. Uploads are private (``publicly_visible=n``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.astrometry.blind import BlindHints
from pipeline.astrometry.errors import (
    SolverCancelled,
    SolverFailed,
    SolverTimeout,
    SolverUnavailable,
)
from pipeline.astrometry.sources import Detections
from pipeline.astrometry.wcsfile import wcs_from_header

log = logging.getLogger("skysift.astrometry")

DEFAULT_NOVA_URL = "https://nova.astrometry.net"
MAX_UPLOAD_OBJECTS = 1000


@dataclass(frozen=True)
class NovaSettings:
    """Where and how patiently to talk to nova.astrometry.net.

    Attributes
    ----------
    api_key : str
        The user's key (from their nova.astrometry.net profile).
    base_url : str
        Server root, without ``/api``.
    timeout_s : float
        Timeout of each HTTP request.
    poll_interval_s : float
        Pause between status polls.
    max_wait_s : float
        Give up (retryably) when no result came within this time.
    """

    api_key: str
    base_url: str = DEFAULT_NOVA_URL
    timeout_s: float = 30.0
    poll_interval_s: float = 5.0
    max_wait_s: float = 600.0


class NovaClient:
    """One session with nova.astrometry.net (or a server speaking its API)."""

    def __init__(self, settings: NovaSettings, client: httpx.Client | None = None) -> None:
        if not settings.api_key:
            raise SolverUnavailable(
                "no nova.astrometry.net API key configured: get one from your profile at "
                "nova.astrometry.net or use the local solve-field"
            )
        self.settings = settings
        self.base = settings.base_url.rstrip("/")
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=settings.timeout_s, follow_redirects=True)
        self.session: str | None = None

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> NovaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.base}/{path.lstrip('/')}"
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise SolverTimeout(
                f"nova.astrometry.net did not answer within {self.settings.timeout_s:g} s "
                f"({url}); try again later"
            ) from exc
        except httpx.HTTPError as exc:
            raise SolverTimeout(f"cannot reach nova.astrometry.net at {url}: {exc}") from exc
        if response.status_code >= 500:
            raise SolverTimeout(
                f"nova.astrometry.net answered HTTP {response.status_code} for {url}; "
                "try again later"
            )
        if response.status_code >= 400:
            raise SolverFailed(
                f"nova.astrometry.net answered HTTP {response.status_code} for {url}"
            )
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        try:
            answer = response.json()
        except ValueError as exc:
            raise SolverFailed(
                f"nova.astrometry.net sent something that is not JSON for {path}: "
                f"{response.text[:200]!r}"
            ) from exc
        if not isinstance(answer, dict):
            raise SolverFailed(f"unexpected answer from nova.astrometry.net for {path}: {answer!r}")
        if answer.get("status") == "error":
            message = answer.get("errormessage", "(no message)")
            if "apikey" in message.lower() or "api key" in message.lower():
                raise SolverUnavailable(
                    f"nova.astrometry.net rejected the API key ({message}): check the key in "
                    "your settings"
                )
            raise SolverFailed(f"nova.astrometry.net error: {message}")
        return answer

    def _post_json(self, path: str, payload: dict[str, Any], files=None) -> dict[str, Any]:
        if self.session is not None:
            payload = {**payload, "session": self.session}
        data = {"request-json": json.dumps(payload)}
        return self._json("POST", path, data=data, files=files)

    # --- API calls --------------------------------------------------------------------

    def login(self) -> str:
        """Open a session with the API key; returns the session key."""
        answer = self._post_json("api/login", {"apikey": self.settings.api_key})
        session = answer.get("session")
        if not session:
            raise SolverFailed(f"nova.astrometry.net login gave no session: {answer!r}")
        self.session = str(session)
        return self.session

    def _upload_args(self, shape: tuple[int, int], hints: BlindHints, tweak_order: int) -> dict:
        args: dict[str, Any] = {
            "publicly_visible": "n",
            "allow_commercial_use": "d",
            "allow_modifications": "d",
            "image_width": int(shape[1]),
            "image_height": int(shape[0]),
            "tweak_order": int(tweak_order),
            "crpix_center": True,
        }
        if hints.has_position:
            args.update(center_ra=float(hints.ra), center_dec=float(hints.dec))
            args["radius"] = float(hints.radius_deg or 1.0)
        if hints.has_scale:
            args.update(
                scale_units="arcsecperpix",
                scale_type="ul",
                scale_lower=float(hints.scale_low),
                scale_upper=float(hints.scale_high),
            )
        return args

    def upload_sources(
        self,
        detections: Detections,
        shape: tuple[int, int],
        hints: BlindHints | None = None,
        tweak_order: int = 2,
    ) -> int:
        """Upload the source list (1-based x, y, brightest first); returns the submission id."""
        det = detections.first(MAX_UPLOAD_OBJECTS)
        payload = self._upload_args(shape, hints or BlindHints(), tweak_order)
        payload["x"] = [round(float(v), 3) for v in det.x + 1.0]
        payload["y"] = [round(float(v), 3) for v in det.y + 1.0]
        return self._submission_id(self._post_json("api/upload", payload))

    def upload_file(
        self,
        path: str | Path,
        shape: tuple[int, int],
        hints: BlindHints | None = None,
        tweak_order: int = 2,
    ) -> int:
        """Upload a FITS file (an xylist or an image) as multipart; returns the submission id."""
        path = Path(path)
        payload = self._upload_args(shape, hints or BlindHints(), tweak_order)
        files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
        return self._submission_id(self._post_json("api/upload", payload, files=files))

    @staticmethod
    def _submission_id(answer: dict[str, Any]) -> int:
        if answer.get("status") != "success" or "subid" not in answer:
            raise SolverFailed(f"nova.astrometry.net did not accept the upload: {answer!r}")
        return int(answer["subid"])

    def submission(self, subid: int) -> dict[str, Any]:
        return self._json("GET", f"api/submissions/{subid}")

    def job_status(self, job_id: int) -> str:
        return str(self._json("GET", f"api/jobs/{job_id}").get("status", ""))

    def wait_for_job(self, subid: int, cancelled: Callable[[], bool] | None = None) -> int:
        """Poll until the submission's job has finished; returns the job id if it solved."""
        deadline = time.monotonic() + self.settings.max_wait_s
        job_id: int | None = None
        while True:
            if cancelled is not None and cancelled():
                raise SolverCancelled("the nova.astrometry.net solve was cancelled")
            if job_id is None:
                status = self.submission(subid)
                if status.get("error_message"):
                    raise SolverFailed(
                        f"nova.astrometry.net could not process the upload: "
                        f"{status['error_message']}"
                    )
                jobs = [j for j in status.get("jobs", []) if j is not None]
                job_id = int(jobs[0]) if jobs else None
            if job_id is not None:
                state = self.job_status(job_id)
                if state == "success":
                    return job_id
                if state == "failure":
                    raise SolverFailed(
                        f"nova.astrometry.net could not solve the field (job {job_id}): give "
                        "position/scale hints or check the source list"
                    )
            if time.monotonic() > deadline:
                raise SolverTimeout(
                    f"nova.astrometry.net gave no result within {self.settings.max_wait_s:g} s "
                    f"(submission {subid}); try again later"
                )
            time.sleep(self.settings.poll_interval_s)

    def fetch_wcs(self, job_id: int) -> fits.Header:
        """The solution's WCS header (``wcs_file/<job id>``)."""
        response = self._request("GET", f"wcs_file/{job_id}")
        try:
            return fits.Header.fromfile(BytesIO(response.content))
        except Exception as exc:  # astropy raises OSError/ValueError/... on junk
            raise SolverFailed(
                f"the WCS file of nova.astrometry.net job {job_id} is not a FITS header: {exc}"
            ) from exc


def solve_with_nova(
    detections: Detections,
    shape: tuple[int, int],
    settings: NovaSettings,
    hints: BlindHints | None = None,
    *,
    tweak_order: int = 2,
    cancelled: Callable[[], bool] | None = None,
    client: httpx.Client | None = None,
) -> tuple[WCS, dict[str, Any]]:
    """Blind-solve the detections with nova.astrometry.net.

    Returns the WCS (with the image shape set) and plain details (submission
    and job ids, seconds).

    Raises
    ------
    SolverUnavailable
        No key, or the key was rejected.
    SolverFailed
        The service could not solve the field.
    SolverTimeout
        The service is unreachable, failing or too slow (retry later).
    """
    started = time.perf_counter()
    with NovaClient(settings, client) as nova:
        nova.login()
        subid = nova.upload_sources(detections, shape, hints, tweak_order)
        log.info("nova.astrometry.net submission %d", subid)
        job_id = nova.wait_for_job(subid, cancelled)
        header = nova.fetch_wcs(job_id)
    wcs = wcs_from_header(header)
    wcs.pixel_shape = (int(shape[1]), int(shape[0]))
    if not np.all(np.isfinite(wcs.wcs.crval)):
        raise SolverFailed(f"the WCS of nova.astrometry.net job {job_id} is not usable")
    details = {
        "nova_submission": subid,
        "nova_job": job_id,
        "nova_seconds": round(time.perf_counter() - started, 2),
    }
    return wcs, details
