"""Light curves: every visible task covering a position, measured there, drawn and downloadable."""

from __future__ import annotations

import asyncio
import base64
import io

from litestar import Request, Response, get
from litestar.exceptions import ClientException
from litestar.response import Template
from sqlmodel import col, select

from jobs.db import session_scope
from jobs.models import RunState, StepRun, Task
from jobs.storage import task_dir
from pipeline.lightcurve import measure_task, plot_lightcurve, points_table
from web.access import visible_tasks_query

MAX_TASKS = 300  # tasks examined per request (newest first)


def _collect(task_ids: list[int], ra: float, dec: float):
    rows = []
    for task_id in task_ids:
        for point in measure_task(task_dir(task_id), ra, dec):
            rows.append((task_id, point))
    rows.sort(key=lambda item: (item[1].mjd is None, item[1].mjd or 0.0))
    return rows


@get("/lightcurve", name="lightcurve")
async def lightcurve(
    request: Request, ra: float | None = None, dec: float | None = None, format: str = "html"
) -> Template | Response:
    """Forced photometry at (ra, dec) in every visible task whose image covers it."""
    if ra is None or dec is None:
        return Template("lightcurve.html", context={"ra": None, "dec": None, "rows": []})
    if not (0 <= ra < 360 and -90 <= dec <= 90):
        raise ClientException("RA is 0–360 and Dec −90–+90 degrees")
    with session_scope() as session:
        visible = visible_tasks_query(request).with_only_columns(col(Task.id))
        task_ids = list(
            session.exec(
                select(StepRun.task_id)
                .where(
                    col(StepRun.task_id).in_(visible),
                    StepRun.step == "photometry",
                    StepRun.state == RunState.DONE,
                )
                .distinct()
                .order_by(col(StepRun.task_id).desc())
                .limit(MAX_TASKS)
            ).all()
        )
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
    image = io.BytesIO()
    await asyncio.to_thread(plot_lightcurve, rows, image, f"RA {ra:.5f}  Dec {dec:+.5f}")
    return Template(
        "lightcurve.html",
        context={
            "ra": ra,
            "dec": dec,
            "rows": rows,
            "n_tasks": len(task_ids),
            "plot": base64.b64encode(image.getvalue()).decode(),
        },
    )
