"""A small threaded HTTP server for tests: real sockets, real clients, switchable failures.

A service fixture (VizieR, SkyBoT, ...) gives :class:`FixtureServer` a function that
turns a :class:`Request` into a :class:`Reply` in the service's real format. The
server listens on 127.0.0.1 on a free port and records every request it receives.

Modes (``server.mode = ...``), to exercise a client's error handling:

``"ok"``      answer normally;
``"down"``    nothing listens on the port (the client gets "connection refused");
``"slow"``    wait ``slow_seconds`` (longer than the client's timeout) before answering;
``"error"``   answer HTTP 500;
``"empty"``   answer with the service's "nothing found" reply (``empty`` function).

Use it as a context manager, or wrap it in a pytest fixture::

    @pytest.fixture
    def my_service():
        with FixtureServer(answer, empty=answer_empty) as server:
            yield server
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MODES = ("ok", "down", "slow", "error", "empty")
POLL_SECONDS = 0.05  # how quickly serve_forever notices a shutdown request


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class Reply:
    """What the server sends back."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _default_empty(request: Request) -> Reply:
    return Reply(200, b"")


class _Handler(BaseHTTPRequestHandler):
    server_version = "SkySiftFixture/1.0"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args) -> None:  # keep pytest output clean
        return None

    def _handle(self) -> None:
        fixture: FixtureServer = self.server.fixture  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(
            self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), body
        )
        fixture._record(request)
        reply = fixture._reply(request)
        if reply is None:  # server stopping while a slow answer waited
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass


class FixtureServer:
    """Threaded HTTP server on 127.0.0.1 answering with ``answer(request)``.

    Parameters
    ----------
    answer : callable
        Request → Reply for normal operation.
    empty : callable, optional
        Request → Reply for the service's empty answer (mode ``"empty"``).
    slow_seconds : float
        Delay of mode ``"slow"``; make it longer than the client's timeout.
    """

    def __init__(
        self,
        answer: Callable[[Request], Reply],
        empty: Callable[[Request], Reply] | None = None,
        slow_seconds: float = 5.0,
    ) -> None:
        self.answer = answer
        self.empty = empty or _default_empty
        self.slow_seconds = slow_seconds
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._mode = "ok"
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> FixtureServer:
        """Start listening (on a free port the first time, the same port afterwards)."""
        self._stopping.clear()
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port or 0), _Handler)
        httpd.daemon_threads = True
        httpd.fixture = self  # type: ignore[attr-defined]
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True
        )
        self._thread.start()
        return self

    def _close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stop(self) -> None:
        """Stop listening and wake any slow answer still waiting."""
        self._stopping.set()
        self._close()

    def __enter__(self) -> FixtureServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- state ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        if self.port is None:
            raise RuntimeError("the fixture server has not been started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode {value!r} is not one of {', '.join(MODES)}")
        if value == "down" and self._mode != "down":
            self._close()
        elif value != "down" and self._mode == "down":
            self.start()
        self._mode = value

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset(self) -> None:
        """Forget recorded requests and go back to mode ``"ok"``."""
        self.mode = "ok"
        with self._lock:
            self.requests.clear()

    # --- request handling (called from handler threads) -------------------------------

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _reply(self, request: Request) -> Reply | None:
        mode = self._mode
        if mode == "slow" and self._stopping.wait(self.slow_seconds):
            return None
        if mode == "error":
            return Reply(500, b"<html><body>500 Internal Server Error</body></html>", "text/html")
        try:
            return self.empty(request) if mode == "empty" else self.answer(request)
        except Exception:  # show the fixture's own bug to the test, as a 500
            return Reply(500, traceback.format_exc().encode(), "text/plain")


def serve(
    answer: Callable[[Request], Reply],
    empty: Callable[[Request], Reply] | None = None,
    slow_seconds: float = 5.0,
) -> FixtureServer:
    """A started :class:`FixtureServer` (use it in a ``with`` block or stop it yourself)."""
    return FixtureServer(answer, empty, slow_seconds).start()
