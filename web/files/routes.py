"""Files: download and view a task's files, JS9 viewer, and the archive browser."""

from __future__ import annotations

import io
import logging
import mimetypes
from pathlib import Path
from typing import Annotated, Any

from astropy.io import fits
from litestar import Controller, Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Body
from litestar.response import File, Redirect, Template

from jobs.db import session_scope
from jobs.presets import PresetError, preset_inputs
from jobs.settings import get_settings
from jobs.storage import UnsafePathError, is_fits_name, list_task_files, safe_join, task_dir
from jobs.tasks import FitsInputError, create_task
from pipeline.astrometry import AstrometryError, apply_wcs, read_wcs_file
from pipeline.fitsio import list_hdus
from pipeline.steps.base import IMAGE_FILE, WCS_FILE
from web.access import get_task
from web.accounts.service import audit
from web.presets import all_presets, preset_id_from

logger = logging.getLogger("skysift.web")
FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]


def _existing(root: Path, relative: str) -> Path:
    try:
        path = safe_join(root, relative)
    except UnsafePathError as exc:
        raise NotFoundException(str(exc)) from exc
    if not path.exists():
        raise NotFoundException(f"{relative} does not exist")
    return path


class TaskFilesController(Controller):
    path = "/tasks/{task_id:int}"

    @get("/files", name="files.list")
    async def list_files(self, request: Request, task_id: int) -> Template:
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
        return Template(
            "files/task_files.html", context={"task": task, "files": list_task_files(task_id)}
        )

    @get("/files/{path:path}", name="files.get")
    async def get_file(
        self, request: Request, task_id: int, path: str, download: bool = False
    ) -> File:
        with session_scope() as session:
            get_task(session, request, task_id, "view")
        target = _existing(task_dir(task_id), path)
        if not target.is_file():
            raise NotFoundException(f"{path} is not a file")
        media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if is_fits_name(target.name) or target.suffix == ".wcs":
            media_type = "application/fits"
        return File(
            target,
            filename=target.name,
            media_type=media_type,
            content_disposition_type="attachment" if download else "inline",
            headers={"Cache-Control": "private, no-cache"},
        )

    @get("/download/image-wcs.fits", name="files.image_wcs")
    async def image_with_wcs(self, request: Request, task_id: int) -> Response:
        """``image.fits`` with the refined WCS (``image.wcs``) written into its header."""
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
        folder = task_dir(task_id)
        if not (folder / WCS_FILE).is_file():
            raise NotFoundException("no refined WCS yet: run the photometry step first")
        with fits.open(folder / IMAGE_FILE) as hdul:
            data, header = hdul[0].data, hdul[0].header
            try:
                header = apply_wcs(header, read_wcs_file(folder / WCS_FILE))
            except AstrometryError as exc:
                raise ClientException(str(exc)) from exc
            buffer = io.BytesIO()
            fits.PrimaryHDU(data, header).writeto(buffer)
        stem = Path(task.original_name).name.split(".")[0] or "image"
        return Response(
            buffer.getvalue(),
            media_type="application/fits",
            headers={"Content-Disposition": f'attachment; filename="{stem}_wcs.fits"'},
        )

    @get("/view/{path:path}", name="files.view")
    async def view(self, request: Request, task_id: int, path: str) -> Template:
        """JS9 viewer for one FITS file of the task (static JS9, no helper process)."""
        path = path.lstrip("/")
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
        target = _existing(task_dir(task_id), path)
        if not is_fits_name(target.name):
            raise ClientException(f"{path} is not a FITS image")
        images = [f["name"] for f in list_task_files(task_id) if f["is_fits"]]
        return Template(
            "files/viewer.html",
            context={
                "task": task,
                "path": path,
                "images": images,
                "url": f"/tasks/{task_id}/files/{path}",
            },
        )


def _archive_root(name: str) -> Path:
    roots = get_settings().archives()
    if name not in roots:
        raise NotFoundException(f"no archive named {name!r}")
    return roots[name]


def _archive_entries(root: Path, folder: Path) -> list[dict[str, Any]]:
    entries = []
    for child in sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower())):
        if child.name.startswith("."):
            continue
        try:
            resolved = child.resolve()
        except OSError:
            continue
        if not resolved.is_relative_to(root):
            continue  # symlinks leaving the archive are not offered
        entries.append(
            {
                "name": child.name,
                "path": str(child.relative_to(root)),
                "is_dir": child.is_dir(),
                "size": child.stat().st_size if child.is_file() else None,
                "is_fits": is_fits_name(child.name),
            }
        )
    return entries


def _browse(root: str, path: str) -> Template:
    """A folder listing, or a file's HDUs with their headers."""
    base = _archive_root(root)
    target = _existing(base, path)
    context: dict[str, Any] = {
        "roots": get_settings().archives(),
        "root": root,
        "path": str(target.relative_to(base)) if target != base else "",
    }
    with session_scope() as session:
        context["presets"] = all_presets(session)
    if target.is_dir():
        context["entries"] = _archive_entries(base, target)
        return Template("files/archive.html", context=context)
    try:
        context["hdus"] = list_hdus(target)
    except FitsInputError as exc:
        context["error"] = str(exc)
    return Template("files/archive_file.html", context=context)


class ArchiveController(Controller):
    path = "/archive"

    @get("/", name="archive.roots")
    async def roots(self) -> Template:
        return Template(
            "files/archive.html",
            context={"roots": get_settings().archives(), "root": None, "entries": None},
        )

    @get("/{root:str}", name="archive.root")
    async def browse_root(self, root: str) -> Template:
        return _browse(root, "")

    @get("/{root:str}/{path:path}", name="archive.browse")
    async def browse(self, root: str, path: str) -> Template:
        return _browse(root, path)

    @post("/import", name="archive.import")
    async def import_files(self, request: Request, data: FormData) -> Redirect:
        """Make a task of each chosen archive file (one HDU of it when ``hdu`` is given).

        Several ``path`` values (batch import) make several tasks, each its own; a
        preset applies its settings and files to every one of them.
        """
        base = _archive_root(str(data.get("root", "")))
        paths = data.get("path", [])
        paths = [str(p) for p in (paths if isinstance(paths, list) else [paths]) if str(p)]
        if not paths:
            raise ClientException("choose at least one file")
        targets = [_existing(base, relative) for relative in paths]
        for relative, target in zip(paths, targets, strict=True):
            if not target.is_file():
                raise ClientException(f"{relative} is not a file")
        hdu_text = str(data.get("hdu", "")).strip()
        hdu = int(hdu_text) if hdu_text.isdigit() and len(paths) == 1 else None
        preset_id = preset_id_from(data.get("preset"))
        created: list[int] = []
        problems: list[str] = []
        for relative, target in zip(paths, targets, strict=True):
            try:
                with session_scope() as session:
                    config, extra = preset_inputs(session, preset_id)
                    task = create_task(
                        session,
                        target,
                        original_name=target.name,
                        source="archive",
                        source_path=f"{data.get('root')}:{relative}",
                        hdu=hdu,
                        title=str(data.get("title", ""))[:250],
                        owner_id=request.user.id,
                        config=config,
                        extra_files=extra,
                    )
                    audit(
                        session,
                        request.user,
                        "create_task",
                        f"task:{task.id}",
                        source="archive",
                        path=f"{data.get('root')}:{relative}",
                        hdu=hdu,
                        preset=preset_id,
                    )
                    created.append(task.id)
            except FitsInputError as exc:
                problems.append(f"{target.name}: {exc}")
            except PresetError as exc:
                raise ClientException(str(exc)) from exc
        if not created:
            raise ClientException("; ".join(problems), status_code=422)
        if len(created) == 1 and not problems:
            return Redirect(f"/tasks/{created[0]}")
        # Several tasks: the list shows them (files that failed are named in the log).
        for problem in problems:
            logger.warning("archive import skipped %s", problem)
        return Redirect("/tasks/")
