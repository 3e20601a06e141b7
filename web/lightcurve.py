"""Light curves: every visible task covering a position, measured there, drawn and downloadable."""

from __future__ import annotations

import asyncio
import io

from litestar import Request, Response, get
from litestar.exceptions import ClientException, NotFoundException
from litestar.response import Template
from markupsafe import Markup
from sqlmodel import col

from jobs.db import session_scope
from jobs.footprints import covering_task_ids
from jobs.models import Task
from jobs.storage import task_dir
from pipeline.lightcurve import measure_task, plot_lightcurve, points_table, position_cutout
from web.access import get_task, visible_tasks_query

MAX_TASKS = 1000  # tasks measured per request (newest first) among those covering the position


def _check_position(ra: float, dec: float) -> None:
    if not (0 <= ra < 360 and -90 <= dec <= 90):
        raise ClientException("RA is 0–360 and Dec −90–+90 degrees")


def _collect(task_ids: list[int], ra: float, dec: float):
    rows = []
    for task_id in task_ids:
        for point in measure_task(task_dir(task_id), ra, dec):
            rows.append((task_id, point))
    rows.sort(key=lambda item: (item[1].mjd is None, item[1].mjd or 0.0))
    return rows


def covering_tasks(request: Request, ra: float, dec: float) -> list[int]:
    """Visible tasks whose stored outline holds the position, newest first."""
    with session_scope() as session:
        visible = visible_tasks_query(request).with_only_columns(col(Task.id))
        return covering_task_ids(session, ra, dec, visible)[:MAX_TASKS]


def point_link(ra: float, dec: float):
    def link(task_id: int, _point) -> str:
        return f"/tasks/{task_id}/position.png?ra={ra!r}&dec={dec!r}"

    return link


@get("/lightcurve", name="lightcurve")
async def lightcurve(
    request: Request, ra: float | None = None, dec: float | None = None, format: str = "html"
) -> Template | Response:
    """Forced photometry at (ra, dec) in every visible task whose image covers it."""
    if ra is None or dec is None:
        return Template("lightcurve.html", context={"ra": None, "dec": None, "rows": []})
    _check_position(ra, dec)
    task_ids = await asyncio.to_thread(covering_tasks, request, ra, dec)
    rows = await asyncio.to_thread(_collect, task_ids, ra, dec)
    if format in ("csv", "vot"):
        name = f"lightcurve_{ra:.5f}_{dec:+.5f}"
        table = points_table(rows)
        if format == "csv":
            text = io.StringIO()
            table.write(text, format="ascii.csv")
            content = text.getvalue().encode()
        else:
            binary = io.BytesIO()
            table.write(binary, format="votable")
            content = binary.getvalue()
        return Response(
            content,
            media_type="text/csv" if format == "csv" else "application/x-votable+xml",
            headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'},
        )
    image = io.StringIO()
    link = point_link(ra, dec)
    await asyncio.to_thread(plot_lightcurve, rows, image, f"RA {ra:.5f}  Dec {dec:+.5f}", link)
    svg = image.getvalue()
    svg = svg[svg.index("<svg") :]  # inline: drop the XML prolog and doctype
    return Template(
        "lightcurve.html",
        context={
            "ra": ra,
            "dec": dec,
            "rows": [(t, p, link(t, p)) for t, p in rows],
            "n_tasks": len(task_ids),
            "plot": Markup(svg),  # drawn by matplotlib, which escapes every text it writes
        },
    )


@get("/tasks/{task_id:int}/position.png", name="lightcurve.cutout")
async def position_stamp(
    request: Request, task_id: int, ra: float | None = None, dec: float | None = None
) -> Response:
    """Stamps of a task's image, difference and mask at a position: a light-curve point."""
    with session_scope() as session:
        get_task(session, request, task_id, "view")  # before anything reveals the task
    if ra is None or dec is None:
        raise ClientException("give the position as ra and dec in degrees")
    _check_position(ra, dec)
    png = await asyncio.to_thread(position_cutout, task_dir(task_id), ra, dec)
    if png is None:
        raise NotFoundException(f"task {task_id} does not cover RA {ra} Dec {dec}")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})
