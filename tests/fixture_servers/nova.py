"""A local nova.astrometry.net: the JSON API of https://nova.astrometry.net/api_help.

It speaks what the real service speaks (every request carries a ``request-json``
form field, answers are JSON sent as ``text/plain``, errors are
``{"status": "error", "errormessage": ...}`` with HTTP 200):

``POST /api/login``               ``{"apikey"}`` → ``{"status": "success", "session"}``
``POST /api/upload``              source list as ``x``/``y`` lists in the JSON, or a FITS
                                  xylist as the multipart ``file`` → ``{"subid", "hash"}``
``/api/submissions/<id>``         ``{"jobs": [], ...}`` while queued, then ``[None]``, then
                                  ``[<job id>]`` with ``job_calibrations``
``/api/jobs/<id>``                ``{"status": "solving"}``, then ``success`` or ``failure``
``/wcs_file/<id>``                the solution's WCS header as a FITS file

Instead of solving, the fixture looks the uploaded source list up among known answers:
by default the recorded pair ``../shared/data/services/astrometry_net_test-source-list.fit``
→ ``astrometry_net_test-wcs-sol.fit``; tests add others with :meth:`NovaService.add_answer`.
An unknown list fails like an unsolvable field. ``polls_before_job`` and
``polls_while_solving`` make the client poll like it must on the real service.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from io import BytesIO
from urllib.parse import parse_qs

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy.spatial import cKDTree

from tests.fixture_servers.base import FixtureServer, Reply, Request
from tests.paths import SERVICES_DATA

SERVICES = SERVICES_DATA
RECORDED_SOURCES = SERVICES / "astrometry_net_test-source-list.fit"
RECORDED_WCS = SERVICES / "astrometry_net_test-wcs-sol.fit"
JSON_TYPE = "text/plain"  # what nova.astrometry.net sends its JSON as
MATCH_TOLERANCE_PX = 0.01
MATCH_POINTS = 20


@dataclass
class Submission:
    """One upload and its single job."""

    subid: int
    args: dict
    x: np.ndarray
    y: np.ndarray
    job_id: int
    answer: bytes | None
    polls: int = 0
    job_polls: int = 0


@dataclass
class NovaService:
    """The state of the fake service; ``answer`` is the request handler."""

    api_keys: tuple[str, ...] = ("test-api-key",)
    polls_before_job: int = 1
    polls_while_solving: int = 1
    answers: list[tuple[np.ndarray, bytes]] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    submissions: dict[int, Submission] = field(default_factory=dict)
    uploads: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        if RECORDED_SOURCES.exists() and RECORDED_WCS.exists():
            table = Table.read(RECORDED_SOURCES)
            self.add_answer(
                np.asarray(table["X"]), np.asarray(table["Y"]), RECORDED_WCS.read_bytes()
            )

    def add_answer(self, x, y, wcs: fits.Header | bytes) -> None:
        """Answer uploads of this source list (1-based FITS pixels) with ``wcs``."""
        if isinstance(wcs, fits.Header):
            buffer = BytesIO()
            fits.PrimaryHDU(header=wcs).writeto(buffer)
            wcs = buffer.getvalue()
        self.answers.append((np.c_[np.asarray(x, float), np.asarray(y, float)], wcs))

    # --- request handling --------------------------------------------------------------

    def answer(self, request: Request) -> Reply:
        path = request.path.rstrip("/")
        parts = path.strip("/").split("/")
        with self._lock:
            if path == "/api/login":
                return self._login(request)
            if path == "/api/upload":
                return self._upload(request)
            if len(parts) == 3 and parts[:2] == ["api", "submissions"]:
                return self._submission(int(parts[2]))
            if len(parts) == 3 and parts[:2] == ["api", "jobs"]:
                return self._job(int(parts[2]))
            if len(parts) == 2 and parts[0] == "wcs_file":
                return self._wcs_file(int(parts[1]))
        return Reply(404, b"<html><body>Not Found</body></html>", "text/html")

    @staticmethod
    def _json(payload: dict) -> Reply:
        return Reply(200, json.dumps(payload).encode(), JSON_TYPE)

    def _error(self, message: str) -> Reply:
        return self._json({"status": "error", "errormessage": message})

    @staticmethod
    def _form(request: Request) -> tuple[dict | None, bytes | None]:
        """The parsed ``request-json`` and the uploaded file (multipart) if any."""
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
            )
            fields, upload = {}, None
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name == "file":
                    upload = part.get_payload(decode=True)
                elif name:
                    fields[name] = part.get_payload(decode=True).decode()
            text = fields.get("request-json")
        else:
            form = parse_qs(request.text)
            text = form.get("request-json", [None])[-1]
            upload = None
        if text is None:
            return None, upload
        try:
            return json.loads(text), upload
        except ValueError:
            return None, upload

    def _login(self, request: Request) -> Reply:
        args, _ = self._form(request)
        if args is None:
            return self._error("no json")
        if "apikey" not in args:
            return self._error('need "apikey"')
        if args["apikey"] not in self.api_keys:
            return self._error("bad apikey")
        session = hashlib.sha1(f"{args['apikey']}{len(self.sessions)}".encode()).hexdigest()[:24]
        self.sessions.add(session)
        return self._json(
            {
                "status": "success",
                "message": "authenticated user: test@example.org",
                "session": session,
            }
        )

    def _upload(self, request: Request) -> Reply:
        args, upload = self._form(request)
        if args is None:
            return self._error("no json")
        if args.get("session") not in self.sessions:
            return self._error(f'no session with key "{args.get("session")}"')
        if upload is not None:
            table = Table.read(BytesIO(upload), format="fits")
            x, y = np.asarray(table["X"], float), np.asarray(table["Y"], float)
        elif "x" in args and "y" in args:
            x, y = np.asarray(args["x"], float), np.asarray(args["y"], float)
        else:
            return self._error("no file uploaded and no x/y source list")
        self.uploads.append(args)
        subid = len(self.submissions) + 1
        self.submissions[subid] = Submission(
            subid, args, x, y, job_id=1000 + subid, answer=self._lookup(x, y)
        )
        digest = hashlib.sha1(np.c_[x, y].tobytes()).hexdigest()
        return self._json({"status": "success", "subid": subid, "hash": digest})

    def _lookup(self, x: np.ndarray, y: np.ndarray) -> bytes | None:
        points = np.c_[x, y][:MATCH_POINTS]
        for known, wcs in self.answers:
            distance, _ = cKDTree(known).query(points)
            if np.mean(distance < MATCH_TOLERANCE_PX) >= 0.8:
                return wcs
        return None

    def _submission(self, subid: int) -> Reply:
        sub = self.submissions.get(subid)
        if sub is None:
            return Reply(404, b"<html><body>Not Found</body></html>", "text/html")
        sub.polls += 1
        status = {
            "user": 1,
            "processing_started": "2024-01-01 00:00:00.000000",
            "processing_finished": "None",
            "user_images": [],
            "jobs": [],
            "job_calibrations": [],
        }
        if sub.polls > self.polls_before_job:
            status["user_images"] = [sub.subid + 500]
            status["jobs"] = [sub.job_id]
            status["processing_finished"] = "2024-01-01 00:00:05.000000"
            if sub.job_polls > self.polls_while_solving and sub.answer is not None:
                status["job_calibrations"] = [[sub.job_id, sub.job_id + 7000]]
        elif sub.polls == self.polls_before_job:
            status["jobs"] = [None]  # the real service lists a job slot before it exists
        return self._json(status)

    def _find_job(self, job_id: int) -> Submission | None:
        return next((s for s in self.submissions.values() if s.job_id == job_id), None)

    def _job(self, job_id: int) -> Reply:
        sub = self._find_job(job_id)
        if sub is None:
            return Reply(404, b"<html><body>Not Found</body></html>", "text/html")
        sub.job_polls += 1
        if sub.job_polls <= self.polls_while_solving:
            return self._json({"status": "solving"})
        return self._json({"status": "success" if sub.answer is not None else "failure"})

    def _wcs_file(self, job_id: int) -> Reply:
        sub = self._find_job(job_id)
        if sub is None or sub.answer is None:
            return Reply(404, b"<html><body>Not Found</body></html>", "text/html")
        return Reply(200, sub.answer, "application/fits")


def nova_server(service: NovaService | None = None, slow_seconds: float = 5.0) -> FixtureServer:
    """A (not yet started) fixture server answering as ``service``; ``server.service`` is it."""
    service = service or NovaService()
    server = FixtureServer(service.answer, slow_seconds=slow_seconds)
    server.service = service  # type: ignore[attr-defined]
    return server
