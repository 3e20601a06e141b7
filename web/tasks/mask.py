"""The custom mask drawn in JS9: stored as regions (to edit again) and as a FITS mask."""

from __future__ import annotations

import json
from typing import Any

from astropy.io import fits
from litestar import Controller, Request, get, post
from litestar.exceptions import ClientException

from jobs.db import session_scope
from jobs.storage import task_dir
from pipeline.masking import mask_from_regions, write_custom_mask
from pipeline.steps.base import CUSTOM_MASK_FILE, CUSTOM_MASK_REGIONS_FILE, IMAGE_FILE
from web.access import get_task
from web.accounts.service import audit

MAX_REGIONS = 500


class MaskController(Controller):
    path = "/tasks/{task_id:int}/mask"

    @get("/", name="mask.get")
    async def regions(self, request: Request, task_id: int) -> dict[str, Any]:
        """The saved regions (0-based pixel coordinates), or none."""
        with session_scope() as session:
            get_task(session, request, task_id, "view")
        path = task_dir(task_id) / CUSTOM_MASK_REGIONS_FILE
        if not path.exists():
            return {"regions": [], "invert": False}
        return json.loads(path.read_text())

    @post("/", name="mask.save", status_code=200)
    async def save(self, request: Request, task_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """Validate and store the regions; an empty list removes the custom mask."""
        with session_scope() as session:
            get_task(session, request, task_id, "edit")
            audit(
                session,
                request.user,
                "save_mask",
                f"task:{task_id}",
                regions=len(data.get("regions") or []),
            )
        folder = task_dir(task_id)
        regions = data.get("regions")
        invert = bool(data.get("invert", False))
        if not isinstance(regions, list) or len(regions) > MAX_REGIONS:
            raise ClientException(f"send a list of at most {MAX_REGIONS} regions")
        if not regions:
            for name in (CUSTOM_MASK_REGIONS_FILE, CUSTOM_MASK_FILE):
                (folder / name).unlink(missing_ok=True)
            return {"masked_fraction": 0.0, "regions": 0}
        header = fits.getheader(folder / IMAGE_FILE)
        shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        try:
            mask = mask_from_regions(regions, shape, invert=invert)
        except ValueError as exc:
            raise ClientException(str(exc)) from exc
        if mask.mean() > 0.95:
            raise ClientException(
                "these regions would mask more than 95 % of the image: "
                "untick “regions mark the usable area” or draw fewer regions"
            )
        write_custom_mask(folder / CUSTOM_MASK_FILE, mask)
        (folder / CUSTOM_MASK_REGIONS_FILE).write_text(
            json.dumps({"regions": regions, "invert": invert}, indent=1)
        )
        return {"masked_fraction": float(mask.mean()), "regions": len(regions)}
