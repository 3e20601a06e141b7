"""Candidate vetting: lists with cutouts, votes and comments, and a search across tasks."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Body
from litestar.response import Template
from sqlalchemy import func, tuple_
from sqlmodel import Session, col, select

from jobs.candidates import blink_strip, cutout_name, read_candidates
from jobs.db import session_scope
from jobs.models import Candidate, Comment, Task, User, Vote, VoteValue, utcnow
from jobs.runner import publish
from pipeline.steps import STEPS, get_step
from web.access import get_task, visible_tasks_query
from web.accounts.service import audit

FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
PER_PAGE = 20
ANNOTATIONS = ("known_variable", "vsx_name", "minor_planet", "xmatch_catalog", "xmatch_dmag")
SORTS = {"mag": col(Candidate.mag).asc(), "sn": col(Candidate.sn).desc(), "time": col(Candidate.id)}


def _candidate_step(step: str):
    try:
        spec = get_step(step)
    except KeyError as exc:
        raise NotFoundException(str(exc)) from exc
    if spec.candidates is None:
        raise NotFoundException(f"the {spec.title.lower()} step finds no candidates")
    return spec


def vote_summary(session: Session, task_id: int, step: str, keys: list[str], user_id: int):
    """Counts, voter names and the requester's own vote, per candidate key."""
    rows = session.exec(
        select(Vote, User.username)
        .join(User, User.id == Vote.user_id)
        .where(Vote.task_id == task_id, Vote.step == step, col(Vote.key).in_(keys))
    ).all()
    summary: dict[str, dict] = {
        k: {"counts": defaultdict(int), "names": defaultdict(list), "mine": None} for k in keys
    }
    for vote, username in rows:
        entry = summary[vote.key]
        entry["counts"][vote.value.value] += 1
        entry["names"][vote.value.value].append(username)
        if vote.user_id == user_id:
            entry["mine"] = vote.value.value
    return summary


def comments_for(session: Session, task_id: int, step: str, keys: list[str]):
    rows = session.exec(
        select(Comment)
        .where(Comment.task_id == task_id, Comment.step == step, col(Comment.key).in_(keys))
        .order_by(col(Comment.id))
    ).all()
    grouped: dict[str, list[Comment]] = defaultdict(list)
    for comment in rows:
        grouped[comment.key].append(comment)
    return grouped


def _block_context(session, request, task_id, step, key) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "step": step,
        "key": key,
        "votes": vote_summary(session, task_id, step, [key], request.user.id)[key],
        "comments": comments_for(session, task_id, step, [key])[key],
        "choices": [v.value for v in VoteValue],
    }


def _require_candidate(session: Session, task_id: int, step: str, key: str) -> None:
    found = session.exec(
        select(Candidate.id).where(
            Candidate.task_id == task_id, Candidate.step == step, Candidate.key == key
        )
    ).first()
    if found is None:
        raise NotFoundException(f"no candidate {key} in this task")


class CandidateController(Controller):
    path = "/tasks/{task_id:int}/candidates/{step:str}"

    @get("/", name="candidates.list")
    async def list_candidates(
        self, request: Request, task_id: int, step: str, page: int = 1, sort: str = "mag"
    ) -> Template:
        spec = _candidate_step(step)
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
            query = select(Candidate).where(Candidate.task_id == task_id, Candidate.step == step)
            total = session.exec(select(func.count()).select_from(query.subquery())).one()
            pages = max(1, math.ceil(total / PER_PAGE))
            page = min(max(page, 1), pages)
            order = SORTS.get(sort, SORTS["mag"])
            rows = session.exec(
                query.order_by(order).offset((page - 1) * PER_PAGE).limit(PER_PAGE)
            ).all()
            keys = [r.key for r in rows]
            votes = vote_summary(session, task_id, step, keys, request.user.id)
            comments = comments_for(session, task_id, step, keys)
        table = read_candidates(task_id, step)
        items = []
        for row in rows:
            notes = {}
            if table is not None and row.row < len(table):
                source = table[row.row]
                notes = {
                    a: source[a]
                    for a in ANNOTATIONS
                    if a in table.colnames and str(source[a]) not in ("", "--", "False", "nan", "0")
                }
            items.append(
                {
                    "c": row,
                    "cutout": cutout_name(task_id, step, row.key),
                    "blink": blink_strip(task_id, step, row.key),
                    "notes": notes,
                    "block": {
                        "task_id": task_id,
                        "step": step,
                        "key": row.key,
                        "votes": votes[row.key],
                        "comments": comments[row.key],
                        "choices": [v.value for v in VoteValue],
                    },
                }
            )
        return Template(
            "candidates/list.html",
            context={
                "task": task,
                "spec": spec,
                "items": items,
                "page": page,
                "pages": pages,
                "total": total,
                "sort": sort,
            },
        )

    @post("/{key:str}/vote", name="candidates.vote", status_code=200)
    async def vote(
        self, request: Request, task_id: int, step: str, key: str, data: FormData
    ) -> Template:
        _candidate_step(step)
        with session_scope() as session:
            get_task(session, request, task_id, "view")  # everyone who sees it may vote
            _require_candidate(session, task_id, step, key)
            try:
                value = VoteValue(str(data.get("value", "")))
            except ValueError as exc:
                raise ClientException("a vote is real, bogus or unsure") from exc
            existing = session.get(Vote, (task_id, step, key, request.user.id))
            vote = existing or Vote(
                task_id=task_id, step=step, key=key, user_id=request.user.id, value=value
            )
            vote.value, vote.time = value, utcnow()
            session.add(vote)
            audit(
                session, request.user, "vote", f"task:{task_id}", candidate=key, value=value.value
            )
            session.commit()
            publish(
                task_id, "vote", step=step, key=key, user=request.user.username, value=value.value
            )
            return Template(
                "candidates/_block.html",
                context=_block_context(session, request, task_id, step, key),
            )

    @post("/{key:str}/comment", name="candidates.comment", status_code=200)
    async def comment(
        self, request: Request, task_id: int, step: str, key: str, data: FormData
    ) -> Template:
        _candidate_step(step)
        with session_scope() as session:
            get_task(session, request, task_id, "view")
            _require_candidate(session, task_id, step, key)
            text = str(data.get("text", "")).strip()
            if not text or len(text) > 2000:
                raise ClientException("a comment is 1–2000 characters")
            session.add(
                Comment(
                    task_id=task_id,
                    step=step,
                    key=key,
                    user_id=request.user.id,
                    username=request.user.username,
                    text=text,
                )
            )
            audit(session, request.user, "comment", f"task:{task_id}", candidate=key)
            session.commit()
            publish(task_id, "comment", step=step, key=key, user=request.user.username)
            return Template(
                "candidates/_block.html",
                context=_block_context(session, request, task_id, step, key),
            )

    @get("/{key:str}/block", name="candidates.block")
    async def block(self, request: Request, task_id: int, step: str, key: str) -> Template:
        _candidate_step(step)
        with session_scope() as session:
            get_task(session, request, task_id, "view")
            _require_candidate(session, task_id, step, key)
            return Template(
                "candidates/_block.html",
                context=_block_context(session, request, task_id, step, key),
            )


def _parse_day(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ClientException(f"{text!r} is not a date (YYYY-MM-DD)") from exc


@get("/candidates", name="candidates.search")
async def search_candidates(
    request: Request,
    vote: str = "",
    since: str = "",
    ra: float | None = None,
    dec: float | None = None,
    radius: float = 1.0 / 60,
    page: int = 1,
) -> Template:
    """Candidates of every task the requester may see, by vote state, date and position."""
    start = _parse_day(since)
    with session_scope() as session:
        # unordered: a sorted IN-subquery keeps PostgreSQL from walking the id index
        visible = visible_tasks_query(request).with_only_columns(col(Task.id)).order_by(None)
        query = select(Candidate).where(col(Candidate.task_id).in_(visible))
        if start is not None:
            query = query.where(Candidate.created >= start)
        if ra is not None and dec is not None:
            # a box first (indexed), then the exact circle below
            cos_dec = max(math.cos(math.radians(dec)), 1e-6)
            query = query.where(
                col(Candidate.dec).between(dec - radius, dec + radius),
                col(Candidate.ra).between(ra - radius / cos_dec, ra + radius / cos_dec),
            )
        identity = tuple_(Candidate.task_id, Candidate.step, Candidate.key)
        voted = select(Vote.task_id, Vote.step, Vote.key)
        if vote in ("real", "bogus", "unsure"):
            query = query.where(identity.in_(voted.where(Vote.value == VoteValue(vote))))
        elif vote == "none":
            query = query.where(~identity.in_(voted))
        rows = session.exec(
            query.order_by(col(Candidate.id).desc()).offset((max(page, 1) - 1) * 100).limit(100)
        ).all()
        if ra is not None and dec is not None:
            rows = [r for r in rows if _separation(r.ra, r.dec, ra, dec) <= radius]
    return Template(
        "candidates/search.html",
        context={
            "rows": rows,
            "vote": vote,
            "since": since,
            "ra": ra,
            "dec": dec,
            "radius": radius,
            "page": max(page, 1),
            "steps": {s.name: s.title for s in STEPS},
        },
    )


def _separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    value = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(min(1.0, max(-1.0, value))))
