"""Every route × every role: the access layer refuses what it must.

The table of routes comes from the app itself, so a new route without an entry in
ROUTE_RULES fails this test until someone decides who may use it.
"""

from __future__ import annotations

import re

import pytest
from litestar.routes import HTTPRoute

from tests.conftest import api_token, make_user, start_session
from tests.web.test_tasks import fits_bytes, upload

# Who may use each route: "public" (anyone), "user" (any signed-in account), "admin",
# "task-view" / "task-edit" / "task-manage" (rights on the task in the path),
# "self" (acts on the caller's own account). Keys are (method, path pattern).
ROUTE_RULES: dict[tuple[str, str], str] = {
    ("GET", "/"): "user",
    ("GET", "/tasks"): "user",
    ("POST", "/tasks/upload"): "user",
    ("POST", "/tasks/{task_id:int}/template"): "task-edit",
    ("POST", "/tasks/demo"): "user",
    ("GET", "/tasks/{task_id:int}"): "task-view",
    ("GET", "/tasks/{task_id:int}/steps/{step:str}"): "task-view",
    ("POST", "/tasks/{task_id:int}/steps/{step:str}/run"): "task-edit",
    ("POST", "/tasks/{task_id:int}/steps/{step:str}/cancel"): "task-edit",
    ("POST", "/tasks/{task_id:int}/title"): "task-edit",
    ("POST", "/tasks/{task_id:int}/delete"): "task-manage",
    ("POST", "/tasks/{task_id:int}/duplicate"): "task-view",
    ("POST", "/api/tasks/{task_id:int}/duplicate"): "task-view",
    ("DELETE", "/api/tasks/{task_id:int}"): "task-manage",
    ("GET", "/tasks/{task_id:int}/files"): "task-view",
    ("GET", "/tasks/{task_id:int}/download/image-wcs.fits"): "task-view",
    ("GET", "/tasks/{task_id:int}/files/{path:path}"): "task-view",
    ("GET", "/tasks/{task_id:int}/view/{path:path}"): "task-view",
    ("GET", "/tasks/{task_id:int}/mask"): "task-view",
    ("POST", "/tasks/{task_id:int}/mask"): "task-edit",
    ("POST", "/tasks/{task_id:int}/shares"): "task-manage",
    ("POST", "/tasks/{task_id:int}/shares/{group_id:int}/delete"): "task-manage",
    ("GET", "/tasks/{task_id:int}/events"): "task-view",
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("POST", "/logout"): "user",
    ("GET", "/setup"): "public",
    ("POST", "/setup"): "public",
    ("GET", "/profile"): "self",
    ("POST", "/profile/password"): "self",
    ("POST", "/profile/tokens"): "self",
    ("POST", "/profile/tokens/{token_id:int}/revoke"): "self",
    ("GET", "/admin"): "admin",
    ("GET", "/admin/audit"): "admin",
    ("POST", "/admin/users"): "admin",
    ("POST", "/admin/groups"): "admin",
    ("POST", "/admin/memberships"): "admin",
    ("POST", "/admin/users/{user_id:int}/reset"): "admin",
    ("GET", "/reset/{token:str}"): "public",
    ("POST", "/reset/{token:str}"): "public",
    ("GET", "/archive"): "user",
    ("GET", "/archive/{root:str}"): "user",
    ("GET", "/archive/{root:str}/{path:path}"): "user",
    ("POST", "/archive/import"): "user",
    ("GET", "/api/steps"): "user",
    ("GET", "/api/tasks"): "user",
    ("POST", "/api/tasks"): "user",
    ("GET", "/api/tasks/{task_id:int}"): "task-view",
    ("GET", "/api/tasks/{task_id:int}/files"): "task-view",
    ("GET", "/api/tasks/{task_id:int}/candidates/{step:str}"): "task-view",
    ("POST", "/api/tasks/{task_id:int}/files/{name:str}"): "task-edit",
    ("POST", "/api/tasks/{task_id:int}/steps/{step:str}"): "task-edit",
    ("POST", "/api/tasks/{task_id:int}/steps/{step:str}/cancel"): "task-edit",
    ("GET", "/static/{file_path:path}"): "public",
    ("POST", "/tasks/{task_id:int}/links"): "task-manage",
    ("POST", "/tasks/{task_id:int}/links/{link_id:int}/revoke"): "task-manage",
    ("GET", "/embed/{token:str}"): "public",
    ("GET", "/presets"): "user",
    ("GET", "/candidates"): "user",
    ("GET", "/lightcurve"): "user",
    ("GET", "/tasks/{task_id:int}/position.png"): "task-view",
    ("GET", "/tasks/{task_id:int}/candidates/{step:str}"): "task-view",
    ("GET", "/tasks/{task_id:int}/candidates/{step:str}/{key:str}/block"): "task-view",
    ("POST", "/tasks/{task_id:int}/candidates/{step:str}/{key:str}/vote"): "task-view",
    ("POST", "/tasks/{task_id:int}/candidates/{step:str}/{key:str}/comment"): "task-view",
    ("POST", "/presets/from-task/{task_id:int}"): "task-view",
    ("POST", "/presets/{preset_id:int}/delete"): "self",
    ("GET", "/embed/{token:str}/files/{path:path}"): "public",
}
PUBLIC_PREFIXES = ("/api/schema",)  # the generated API description

ROLES = ("anonymous", "stranger", "viewer", "editor", "owner", "admin")
REFUSALS = {401, 403, 404}


def allowed(rule: str, role: str) -> bool:
    if rule == "public":
        return True
    if role == "anonymous":
        return False
    return {
        "user": True,
        "self": True,
        "admin": role == "admin",
        "task-view": role in ("viewer", "editor", "owner", "admin"),
        "task-edit": role in ("editor", "owner", "admin"),
        "task-manage": role in ("owner", "admin"),
    }[rule]


def app_routes(app) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            found.append((method, route.path))
    return found


@pytest.fixture
def world(client, settings):
    """Users in every role around one task owned by "owner"."""
    from sqlmodel import select

    from jobs.db import session_scope
    from jobs.models import AccessLevel, Candidate, Group, ShareLink, TaskShare

    make_user("owner", groups=("owners",))
    make_user("viewer", groups=("watchers",))
    make_user("editor", groups=("runners",))
    make_user("stranger")
    start_session(client, "owner")
    task_id = upload(client, fits_bytes((64, 64))).json()["id"]
    with session_scope() as session:
        groups = {g.name: g.id for g in session.exec(select(Group)).all()}
        session.add(TaskShare(task_id=task_id, group_id=groups["watchers"]))
        session.add(TaskShare(task_id=task_id, group_id=groups["runners"], access=AccessLevel.EDIT))
        session.add(
            Candidate(
                task_id=task_id,
                step="transients_simple",
                key="J000000.00+000000.0",
                row=0,
                ra=0.0,
                dec=0.0,
            )
        )
        link = ShareLink(task_id=task_id, token_hash="0" * 64)
        session.add(link)
        session.flush()
        link_id = link.id
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cdelt = [150, 20], [32, 32], [-2e-4, 2e-4]
    fits.PrimaryHDU(header=wcs.to_header()).writeto(settings.tasks_dir / str(task_id) / "image.wcs")
    tokens = {role: api_token(role) for role in ("owner", "viewer", "editor", "stranger")}
    tokens["admin"] = api_token("admin")
    return {"task_id": task_id, "group_id": groups["owners"], "tokens": tokens, "link_id": link_id}


def concrete(path: str, world: dict) -> str:
    values = {
        "task_id": str(world["task_id"]),
        "step": "inspect",
        "path": "image.fits",
        "file_path": "css/skysift.css",
        "root": "nothing-here",
        "group_id": str(world["group_id"]),
        "token_id": "999",
        "link_id": str(world["link_id"]),
        "preset_id": "999",
        "key": "J000000.00+000000.0",
        "name": "catalog.fits",
        "token": "skl_not-a-real-link",
        "user_id": "1",
    }
    if "/candidates/" in path:
        values["step"] = "transients_simple"
    if path.startswith("/api/schema"):
        values["path"] = "openapi.json"
    return re.sub(r"\{(\w+):\w+\}", lambda m: values[m.group(1)], path)


def test_every_route_has_an_access_rule(client):
    routes = app_routes(client.app)
    missing = [r for r in routes if r not in ROUTE_RULES and not r[1].startswith(PUBLIC_PREFIXES)]
    assert not missing, f"routes without an access rule in ROUTE_RULES: {missing}"
    stale = [r for r in ROUTE_RULES if r not in routes]
    assert not stale, f"ROUTE_RULES lists routes the app no longer has: {stale}"


@pytest.mark.parametrize("role", ROLES)
def test_routes_refuse_what_they_must(client, world, role):
    if role == "anonymous":
        client.cookies.clear()
        client.get("/login")  # a CSRF cookie, as a browser on the sign-in page has
        client.headers["x-csrftoken"] = client.cookies.get("csrftoken", "")
    else:
        start_session(client, role)
    failures = []
    # candidate routes first (running a step clears the candidates), deleting the task last
    deleted = False
    routes = sorted(
        app_routes(client.app),
        key=lambda r: (
            ("/candidates/" not in r[1])
            + 2 * (r[1] == "/tasks/{task_id:int}/delete" or r[0] == "DELETE")
        ),
    )
    for method, pattern in routes:
        rule = "public" if pattern.startswith(PUBLIC_PREFIXES) else ROUTE_RULES[(method, pattern)]
        if pattern in ("/logout", "/login", "/setup") and method == "POST":
            continue  # end or start sessions: tested in test_accounts
        url = concrete(pattern, world)
        headers = {"accept": "application/json"}
        if url.startswith("/api/") and method != "GET" and role != "anonymous":
            headers["authorization"] = f"Bearer {world['tokens'][role]}"
        if pattern.endswith("/events"):
            continue  # an endless stream: test_events checks it over a real socket
        is_delete = pattern == "/tasks/{task_id:int}/delete" or method == "DELETE"
        if is_delete and deleted:
            continue  # the task is gone already: one delete per role is enough
        kwargs = {"json": {}} if url.startswith("/api/") or "/mask" in url else {"data": {}}
        if method == "GET":
            kwargs = {}
        status = client.request(
            method, url, headers=headers, follow_redirects=False, **kwargs
        ).status_code
        should = allowed(rule, role)
        deleted = deleted or (is_delete and status < 400)
        refused = status in REFUSALS or (
            role == "anonymous" and status in (302, 303) and not should
        )
        # Outside task routes a 404 means "no such token/archive" here, not a refusal.
        refusals = REFUSALS if rule.startswith("task") else {401, 403}
        if should and status in refusals:
            failures.append(f"{method} {url}: {role} refused with {status} (rule {rule})")
        if not should and not refused:
            failures.append(f"{method} {url}: {role} got {status}, expected a refusal ({rule})")
        if status >= 500:
            failures.append(f"{method} {url}: {role} caused a server error {status}")
    assert not failures, "\n".join(failures)
