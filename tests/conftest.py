"""Shared fixtures: an isolated data folder, the app, real data paths."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.paths import REAL_DATA

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.exists():
        pytest.skip(f"real data folder {REAL_DATA} is missing")
    return REAL_DATA


@pytest.fixture
def output_dir(request) -> Path:
    """A folder kept after the run for screenshots and plots of this test."""
    path = OUTPUT_DIR / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Process-wide settings pointing at a fresh data folder (embedded mode)."""
    from jobs import channels, db
    from jobs import settings as settings_module

    for key in list(os.environ):
        if key.startswith("SKYSIFT_") and key not in ("SKYSIFT_REQUIRE_SERVICES",):
            monkeypatch.delenv(key)
    configured = settings_module.configure(data_dir=tmp_path / "data", heartbeat_s=0.2)
    channels.reset_channel()
    yield configured
    db.dispose_engines()
    channels.reset_channel()
    settings_module._current = None


PASSWORD = "correct horse battery"


def start_session(client, username: str, password: str = PASSWORD):
    """Sign ``client`` in (creating the first admin through /setup when none exists)."""
    client.cookies.clear()
    client.headers.pop("x-csrftoken", None)
    client.headers.pop("authorization", None)
    first = client.get("/login")  # sets the CSRF cookie; redirects to /setup on a new portal
    client.headers["x-csrftoken"] = client.cookies.get("csrftoken", "")
    if first.url.path == "/setup":
        form = {"username": username, "password": password, "password2": password}
        response = client.post("/setup", data=form)
    else:
        response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code in (200, 303) and response.url.path == "/tasks/", response.text
    return client


def make_user(username: str, *, admin: bool = False, groups: tuple[str, ...] = ()) -> int:
    """Create a user (and groups) directly in the database; returns the user id."""
    from sqlmodel import select

    from jobs.db import session_scope
    from jobs.models import Group
    from web.accounts import service

    with session_scope() as session:
        user = service.create_user(session, username, PASSWORD, is_admin=admin)
        for name in groups:
            group = session.exec(select(Group).where(Group.name == name)).first()
            group = group or service.create_group(session, name)
            service.set_membership(session, user.id, group.id, True)
        return user.id


def api_token(username: str) -> str:
    from sqlmodel import select

    from jobs.db import session_scope
    from jobs.models import User
    from web.accounts import service

    with session_scope() as session:
        user = session.exec(select(User).where(User.username == username)).one()
        return service.create_token(session, user, "tests")[1]


@pytest.fixture
def client(settings):
    """A test client of the app, with its embedded worker, signed in as the admin "admin"."""
    from litestar.testing import TestClient

    from web.app import create_app

    with TestClient(create_app(settings), base_url="http://testserver.local") as test_client:
        yield start_session(test_client, "admin")


@pytest.fixture
def api(client):
    """Headers that authenticate API calls of the admin with a token."""
    return {"authorization": f"Bearer {api_token('admin')}"}


def wait_for_run(client, task_id: int, step: str, timeout: float = 120.0) -> dict:
    """Poll the API until the step's latest run has finished; return it."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/tasks/{task_id}").json()["steps"].get(step)
        if run and run["state"] not in ("queued", "running"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"{step} of task {task_id} did not finish in {timeout} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server_env() -> dict[str, str]:
    """Extra environment of the live portal; tests override this fixture."""
    return {}


@pytest.fixture
def live_server(tmp_path, live_server_env):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSIFT_")}
    env.update(live_server_env)
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "web.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/login", timeout=1).status_code < 500:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        raise AssertionError("the portal did not start: " + (tmp_path / "server.log").read_text())
    yield url
    process.terminate()
    process.wait(timeout=20)


def live_client(url: str, username: str = "admin") -> httpx.Client:
    """An httpx client signed in to a live portal (first admin created via /setup)."""
    client = httpx.Client(base_url=url, follow_redirects=True, timeout=60)
    start_session(client, username)
    return client
