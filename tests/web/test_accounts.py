"""Accounts: first set-up, sign-in, passwords, tokens, admin, sharing, audit."""

from __future__ import annotations

from litestar.testing import TestClient

from tests.conftest import PASSWORD, api_token, make_user, start_session
from tests.web.test_tasks import fits_bytes, upload


def test_first_visit_asks_for_an_admin_then_setup_is_closed(settings):
    from web.app import create_app

    with TestClient(create_app(settings)) as client:
        assert client.get("/tasks/", follow_redirects=False).status_code in (302, 303)
        assert client.get("/login").url.path == "/setup"
        client.headers["x-csrftoken"] = client.cookies["csrftoken"]
        short = client.post(
            "/setup", data={"username": "a", "password": "short", "password2": "short"}
        )
        assert short.status_code == 400 and "10 characters" in short.text
        ok = client.post(
            "/setup", data={"username": "root", "password": PASSWORD, "password2": PASSWORD}
        )
        assert ok.url.path == "/tasks/"
        client.cookies.clear()
        again = client.get("/setup")
        assert again.url.path == "/login"  # only the very first account comes from /setup
        client.headers["x-csrftoken"] = client.cookies["csrftoken"]
        client.post(
            "/setup", data={"username": "intruder", "password": PASSWORD, "password2": PASSWORD}
        )
        from sqlmodel import select

        from jobs.db import session_scope
        from jobs.models import User

        with session_scope() as session:
            assert [u.username for u in session.exec(select(User)).all()] == ["root"]


def test_wrong_password_and_logout(client):
    client.cookies.clear()
    client.get("/login")
    client.headers["x-csrftoken"] = client.cookies["csrftoken"]
    wrong = client.post("/login", data={"username": "admin", "password": "nope-nope-nope"})
    assert wrong.status_code == 401 and "wrong password" in wrong.text
    start_session(client, "admin")
    assert client.get("/tasks/").status_code == 200
    client.post("/logout")
    assert client.get("/tasks/", follow_redirects=False).status_code in (302, 303)


def test_open_redirects_are_not_followed(client):
    client.cookies.clear()
    client.get("/login")
    client.headers["x-csrftoken"] = client.cookies["csrftoken"]
    response = client.post(
        "/login",
        data={"username": "admin", "password": PASSWORD, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/tasks/"


def test_password_change(client):
    bad = client.post(
        "/profile/password", data={"current": "wrong", "password": "x" * 12, "password2": "x" * 12}
    )
    assert bad.status_code == 400
    new = "a much better passphrase"
    ok = client.post(
        "/profile/password", data={"current": PASSWORD, "password": new, "password2": new}
    )
    assert ok.status_code == 200 and "Password changed" in ok.text
    assert client.get("/tasks/").status_code == 200  # this session goes on
    client.post("/logout")
    start_session(client, "admin", new)


def test_password_reset_link_from_an_administrator(client, settings):
    import re

    from web.app import create_app

    user_id = make_user("forgetful")
    with TestClient(create_app(settings)) as other:
        start_session(other, "forgetful")  # signed in somewhere before forgetting
        assert other.get("/tasks/").status_code == 200
        made = client.post(f"/admin/users/{user_id}/reset")
        assert made.status_code == 200
        link = re.search(r'value="https?://[^/"]+(/reset/[\w-]+)"', made.text).group(1)
        client.cookies.clear()
        client.get("/login")
        client.headers["x-csrftoken"] = client.cookies["csrftoken"]
        form = client.get(link)
        assert form.status_code == 200 and "forgetful" in form.text
        new = "a fresh start passphrase"
        differ = client.post(link, data={"password": new, "password2": new + "x"})
        assert differ.status_code == 400 and "differ" in differ.text
        done = client.post(link, data={"password": new, "password2": new})
        assert done.url.path == "/tasks/"  # signed in with the new password
        assert client.post(link, data={"password": new, "password2": new}).status_code == 404
        # the session opened with the old password ends; the old password no longer works
        assert other.get("/tasks/", follow_redirects=False).status_code in (302, 303)
    start_session(client, "forgetful", new)
    assert client.get("/admin/", follow_redirects=False).status_code == 403
    assert client.post(f"/admin/users/{user_id}/reset").status_code == 403
    audit = [e for e in _audit_actions() if e in ("create_password_reset", "reset_password")]
    assert audit == ["create_password_reset", "reset_password"]


def test_expired_and_unknown_reset_links(client):
    from datetime import timedelta

    from sqlmodel import select

    from jobs.db import session_scope
    from jobs.models import PasswordReset, utcnow
    from web.accounts import service

    make_user("late")
    with session_scope() as session:
        token = service.create_password_reset(session, "late", created_by=None)
    with session_scope() as session:
        reset = session.exec(select(PasswordReset)).one()
        reset.expires = utcnow() - timedelta(minutes=1)
        session.add(reset)
    expired = client.get(f"/reset/{token}")
    assert expired.status_code == 404 and "expired" in expired.text
    assert client.get("/reset/not-a-token").status_code == 404
    assert (
        client.post(
            f"/reset/{token}", data={"password": "x" * 12, "password2": "x" * 12}
        ).status_code
        == 404
    )


def _audit_actions() -> list[str]:
    from sqlmodel import col, select

    from jobs.db import session_scope
    from jobs.models import AuditEvent

    with session_scope() as session:
        return list(session.exec(select(AuditEvent.action).order_by(col(AuditEvent.id))))


def test_tokens_authenticate_the_api_and_can_be_revoked(client):
    page = client.post("/profile/tokens", data={"name": "robot"})
    token = page.text.split('id="new-token">')[1].split("<")[0]
    assert token.startswith("sks_")
    robot = {"authorization": f"Bearer {token}"}
    client.cookies.clear()
    created = client.post(
        "/api/tasks", content=fits_bytes(), headers={**robot, "x-filename": "r.fits"}
    )
    assert created.status_code == 201
    assert client.get("/api/tasks", headers=robot).status_code == 200
    assert client.get("/api/tasks", headers={"authorization": "Bearer sks_nope"}).status_code == 401
    start_session(client, "admin")
    token_id = client.get("/profile/").text.split("/profile/tokens/")[1].split("/")[0]
    client.post(f"/profile/tokens/{token_id}/revoke")
    client.cookies.clear()
    assert client.get("/api/tasks", headers=robot).status_code == 401


def test_api_changes_need_a_token_not_a_browser_session(client):
    task_id = upload(client, fits_bytes()).json()["id"]
    response = client.post(f"/api/tasks/{task_id}/steps/inspect", json={})
    assert response.status_code == 401 and "API token" in response.json()["detail"]


def test_admin_creates_users_and_groups_and_others_may_not(client):
    assert client.post("/admin/groups", data={"name": "LCO"}).status_code == 200
    created = client.post("/admin/users", data={"username": "obs1", "password": PASSWORD})
    assert "User obs1 created" in created.text
    duplicate = client.post("/admin/users", data={"username": "obs1", "password": PASSWORD})
    assert duplicate.status_code == 400 and "taken" in duplicate.text
    start_session(client, "obs1")
    assert client.get("/admin/").status_code == 403
    assert (
        client.post("/admin/users", data={"username": "x", "password": PASSWORD}).status_code == 403
    )


def test_sharing_with_a_group_lets_members_see_and_vote_nothing_else(client):
    make_user("alice", groups=("team",))
    make_user("bob", groups=("team",))
    make_user("eve")
    start_session(client, "alice")
    task_id = upload(client, fits_bytes(), "alice.fits").json()["id"]
    start_session(client, "bob")
    assert client.get(f"/tasks/{task_id}").status_code == 404
    assert "alice.fits" not in client.get("/tasks/").text

    start_session(client, "alice")
    from sqlmodel import select

    from jobs.db import session_scope
    from jobs.models import Group

    with session_scope() as session:
        team = session.exec(select(Group).where(Group.name == "team")).one().id
    shared = client.post(f"/tasks/{task_id}/shares/", data={"group_id": team, "access": "view"})
    assert "team (view)" in shared.text
    start_session(client, "bob")
    assert client.get(f"/tasks/{task_id}").status_code == 200
    assert "alice.fits" in client.get("/tasks/").text
    assert client.post(f"/tasks/{task_id}/steps/inspect/run", data={}).status_code == 403
    assert client.post(f"/tasks/{task_id}/delete").status_code == 403
    start_session(client, "eve")
    assert client.get(f"/tasks/{task_id}").status_code == 404
    # eve is in no group: she cannot share someone else's task, nor her own with "team"
    own = upload(client, fits_bytes(), "eve.fits").json()["id"]
    refused = client.post(f"/tasks/{own}/shares/", data={"group_id": team, "access": "edit"})
    assert refused.status_code == 400


def test_audit_log_records_who_did_what(client):
    task_id = upload(client, fits_bytes()).json()["id"]
    client.post(f"/tasks/{task_id}/title", data={"title": "renamed"})
    token = api_token("admin")
    client.post(
        f"/api/tasks/{task_id}/steps/inspect", json={}, headers={"authorization": f"Bearer {token}"}
    )
    page = client.get("/admin/audit")
    for action in ("create_user", "create_task", "change_title", "run_step"):
        assert action in page.text, action
    filtered = client.get("/admin/audit?action=change_title")
    assert "change_title" in filtered.text and "create_task" not in filtered.text


def test_settings_cannot_reach_into_tasks_one_may_not_see(client):
    make_user("mallory")
    secret = upload(client, fits_bytes(), "secret.fits").json()["id"]
    start_session(client, "mallory")
    own = upload(client, fits_bytes(), "mine.fits").json()["id"]
    response = client.post(
        f"/tasks/{own}/steps/transients_simple/run", data={"other_tasks": str(secret)}
    )
    assert "not visible to you" in response.text
    token = api_token("mallory")
    api_response = client.post(
        f"/api/tasks/{own}/steps/transients_simple",
        json={"other_tasks": [secret]},
        headers={"authorization": f"Bearer {token}"},
    )
    assert api_response.status_code == 400


def test_admin_adds_and_removes_group_members(client):
    from sqlmodel import select

    from jobs.db import session_scope
    from jobs.models import Membership

    user_id = make_user("dora")
    client.post("/admin/groups", data={"name": "pairs"})
    with session_scope() as session:
        from jobs.models import Group

        group_id = session.exec(select(Group).where(Group.name == "pairs")).one().id
    form = {"user_id": str(user_id), "group_id": str(group_id), "member": "on"}
    assert client.post("/admin/memberships", data=form).status_code == 200
    with session_scope() as session:
        assert session.get(Membership, (user_id, group_id)) is not None
    client.post("/admin/memberships", data={"user_id": str(user_id), "group_id": str(group_id)})
    with session_scope() as session:
        assert session.get(Membership, (user_id, group_id)) is None


def test_reset_link_from_the_command_line(client, settings, capsys):
    """For an administrator who lost their own password: a link printed in a shell."""
    from web.cli import main

    here = ["--data-dir", str(settings.data_dir)]
    assert main(["reset-link", "nobody", *here]) == 1
    assert "no user 'nobody'" in capsys.readouterr().err
    assert main(["reset-link", "admin", "--base-url", "https://sky.example.org/", *here]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("https://sky.example.org/reset/")
    path = link.removeprefix("https://sky.example.org")
    client.cookies.clear()
    form = client.get(path)
    assert form.status_code == 200 and "admin" in form.text
