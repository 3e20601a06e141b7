"""The Litestar application: plugins, templates, static files, CSRF and start-up."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Litestar, Request, Response
from litestar.config.compression import CompressionConfig
from litestar.config.csrf import CSRFConfig
from litestar.exceptions import HTTPException
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.openapi import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.stores.base import Store
from litestar.stores.file import FileStore
from litestar.stores.redis import RedisStore
from litestar.stores.registry import StoreRegistry
from litestar.template.config import TemplateConfig
from redis import BlockingConnectionPool, Redis
from sqlalchemy.exc import DataError

from jobs.db import upgrade_database
from jobs.settings import Settings, get_settings
from web.accounts.auth import auth_middleware
from web.accounts.routes import (
    AdminController,
    ProfileController,
    login_form,
    login_submit,
    logout,
    reset_form,
    reset_submit,
    setup_form,
    setup_submit,
)
from web.api.routes import ApiController
from web.candidates import CandidateController, search_candidates
from web.embed import EmbedController, ShareLinkController, add_frame_policy
from web.events import task_events
from web.files.routes import ArchiveController, TaskFilesController
from web.lightcurve import lightcurve, position_stamp
from web.presets import PresetController
from web.tasks.mask import MaskController
from web.tasks.routes import TaskController, home
from web.tasks.sharing import SharingController
from web.templating import register_filters

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("skysift.web")


def _wants_json(request: Request) -> bool:
    """API calls and script requests (JSON sent or asked for) get problem details."""
    accept = request.headers.get("accept", "")
    return (
        request.url.path.startswith("/api/")
        or request.headers.get("content-type", "").startswith("application/json")
        or ("application/json" in accept and "text/html" not in accept)
    )


def http_error(request: Request, exc: HTTPException) -> Response:
    """Problem details for the API and uploads; an HTML page (or fragment) for browsers."""
    status = exc.status_code
    detail = exc.detail or "error"
    if status == 401 and not _wants_json(request):
        target = "/login?next=" + quote(request.url.path)
        if request.headers.get("hx-request"):
            return Response("", status_code=200, headers={"HX-Redirect": target})
        return Redirect(target)
    if _wants_json(request) or request.url.path.endswith("/upload"):
        body: dict[str, Any] = {"status": status, "title": detail, "detail": detail}
        if exc.extra:
            body["extra"] = exc.extra
        return Response(body, status_code=status, media_type="application/problem+json")
    template = "_error_fragment.html" if request.headers.get("hx-request") else "error.html"
    return Template(template, context={"status": status, "detail": detail}, status_code=status)


def _out_of_range(exc: BaseException) -> bool:
    """An id too large for the database column: no such row, not a server fault."""
    cause = getattr(exc, "orig", None) or exc.__cause__
    if isinstance(exc, OverflowError) or isinstance(cause, OverflowError):
        return True
    return isinstance(exc, DataError) and "out of range" in str(exc)


def internal_error(request: Request, exc: Exception) -> Response:
    if _out_of_range(exc):
        return http_error(request, HTTPException(status_code=404, detail="no such item"))
    logger.exception("unhandled error on %s", request.url.path)
    return http_error(request, HTTPException(status_code=500, detail="internal server error"))


SESSION_CONNECTIONS = 50  # Redis connections of one web process for sessions
# Event streams must reach the browser event by event, and FITS files hardly compress.
UNCOMPRESSED_PATHS = [r"/events$", r"/files/"]


def _session_store(settings: Settings) -> Store:
    """Sessions in Redis when deployed (shared by web processes), else files in the data folder."""
    if settings.redis_url:
        # a blocking pool waits for a free connection instead of failing a burst of requests
        # (every open page reconnecting after a restart) with "Too many connections"
        pool = BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=SESSION_CONNECTIONS, timeout=10
        )
        return RedisStore(Redis(connection_pool=pool), namespace="skysift-sessions")
    return FileStore(settings.data_dir / "sessions", create_directories=True)


def create_app(settings: Settings | None = None, *, start_worker: bool = True) -> Litestar:
    """Build the app; in the embedded default it also runs the job worker in-process."""
    settings = settings or get_settings()
    state: dict[str, Any] = {}

    def startup() -> None:
        settings.ensure_dirs()
        upgrade_database()
        # SSE readers wait in threads; the default pool (cores + 4) would cap viewers.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=256))
        from jobs.broker import setup_broker, start_worker
        from jobs.runner import recover_runs

        broker = setup_broker(settings)
        if settings.embedded and start_worker:
            state["worker"] = start_worker(broker, settings.worker_threads)
        counts = recover_runs(requeue=settings.embedded)
        if any(counts.values()):
            logger.warning("recovered runs at start-up: %s", counts)

    def shutdown() -> None:
        worker = state.pop("worker", None)
        if worker is not None:
            worker.stop(timeout=5000)

    session_config = ServerSideSessionConfig(
        store="sessions", max_age=14 * 24 * 3600, samesite="lax", httponly=True
    )
    session_store = _session_store(settings)
    template_config = TemplateConfig(
        directory=ROOT / "templates",
        engine=JinjaTemplateEngine,
        engine_callback=register_filters,
    )
    return Litestar(
        route_handlers=[
            home,
            TaskController,
            TaskFilesController,
            MaskController,
            SharingController,
            ShareLinkController,
            PresetController,
            CandidateController,
            search_candidates,
            lightcurve,
            position_stamp,
            EmbedController,
            login_form,
            login_submit,
            logout,
            reset_form,
            reset_submit,
            setup_form,
            setup_submit,
            ProfileController,
            AdminController,
            ArchiveController,
            ApiController,
            task_events,
            create_static_files_router(path="/static", directories=[ROOT / "static"]),
        ],
        template_config=template_config,
        compression_config=CompressionConfig(backend="gzip", exclude=UNCOMPRESSED_PATHS),
        csrf_config=CSRFConfig(
            secret=settings.resolved_secret(),
            cookie_samesite="strict",
            exclude=["/api/"],
        ),
        middleware=[session_config.middleware, auth_middleware()],
        stores=StoreRegistry(default_factory=lambda name: session_store),
        openapi_config=OpenAPIConfig(title="SkySift API", version="0.1.0", path="/api/schema"),
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        after_request=add_frame_policy,
        on_startup=[startup],
        on_shutdown=[shutdown],
        request_max_body_size=settings.max_upload_mb * 2**20,
        debug=False,
    )


__all__ = ["create_app"]
