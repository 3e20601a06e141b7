"""Vetting: candidate pages, votes and comments by everyone who sees the task, search."""

from __future__ import annotations

from astropy.table import Table

from tests.conftest import make_user, start_session
from tests.web.test_tasks import fits_bytes, upload


def seed_candidates(settings, task_id: int) -> list[str]:
    """A candidate table as the transients step writes it, indexed as the runner does."""
    from jobs.candidates import index_candidates
    from jobs.db import session_scope

    folder = settings.tasks_dir / str(task_id)
    names = ["J100000.00+200000.0", "J100010.00+200100.0", "J100020.00+200200.0"]
    table = Table(
        {
            "ra": [150.0, 150.041667, 150.083333],
            "dec": [20.0, 20.016667, 20.033333],
            "x": [10.0, 20.0, 30.0],
            "y": [10.0, 20.0, 30.0],
            "jname": names,
            "mag_calib": [19.5, 18.2, 20.1],
            "mag_calib_err": [0.05, 0.02, 0.1],
            "flux": [100.0, 400.0, 50.0],
            "fluxerr": [5.0, 8.0, 5.0],
            "known_variable": [False, True, False],
            "vsx_name": ["", "V1234 Cyg", ""],
        }
    )
    table.write(folder / "candidates_simple.fits")
    (folder / "candidates_simple").mkdir()
    (folder / "candidates_simple" / f"{names[0]}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with session_scope() as session:
        assert index_candidates(session, task_id, "transients_simple", 60000.5) == 3
    return names


def test_members_vote_and_comment_and_see_each_other(client, settings):
    from sqlmodel import select

    from jobs.db import session_scope
    from jobs.models import Group, TaskShare

    make_user("bob", groups=("team",))
    task_id = upload(client, fits_bytes(), "field.fits").json()["id"]
    names = seed_candidates(settings, task_id)
    with session_scope() as session:
        team = session.exec(select(Group).where(Group.name == "team")).one()
        session.add(TaskShare(task_id=task_id, group_id=team.id))
    page = client.get(f"/tasks/{task_id}/candidates/transients_simple/?sort=mag")
    assert page.status_code == 200
    text = page.text
    assert text.index(names[1]) < text.index(names[0]) < text.index(names[2])  # by magnitude
    assert "V1234 Cyg" in text and f"candidates_simple/{names[0]}.png" in text
    by_sn = client.get(f"/tasks/{task_id}/candidates/transients_simple/?sort=sn").text
    assert by_sn.index(names[1]) < by_sn.index(names[0])  # S/N 50, 20, 10

    voted = client.post(
        f"/tasks/{task_id}/candidates/transients_simple/{names[0]}/vote", data={"value": "real"}
    )
    assert voted.status_code == 200 and "mine" in voted.text
    start_session(client, "bob")  # a viewer through the group: may vote and comment
    block = client.post(
        f"/tasks/{task_id}/candidates/transients_simple/{names[0]}/vote", data={"value": "bogus"}
    ).text
    assert "real: admin" in block and "bogus: bob" in block
    commented = client.post(
        f"/tasks/{task_id}/candidates/transients_simple/{names[0]}/comment",
        data={"text": "satellite glint?"},
    )
    assert "satellite glint?" in commented.text and "bob" in commented.text
    bad = client.post(
        f"/tasks/{task_id}/candidates/transients_simple/{names[0]}/vote", data={"value": "maybe"}
    )
    assert bad.status_code == 400

    from jobs.channels import get_channel

    kinds = [e.kind for e in get_channel().read(task_id, None, timeout=0.1)]
    assert "vote" in kinds and "comment" in kinds  # what colleagues' pages are told


def test_search_across_visible_tasks(client, settings):
    make_user("carol")
    task_id = upload(client, fits_bytes()).json()["id"]
    names = seed_candidates(settings, task_id)
    client.post(
        f"/tasks/{task_id}/candidates/transients_simple/{names[1]}/vote", data={"value": "real"}
    )
    real = client.get("/candidates?vote=real").text
    assert names[1] in real and names[0] not in real
    unvoted = client.get("/candidates?vote=none").text
    assert names[0] in unvoted and names[1] not in unvoted
    near = client.get("/candidates?ra=150.0&dec=20.0&radius=0.005").text
    assert names[0] in near and names[1] not in near
    assert client.get("/candidates?since=yesterday").status_code == 400
    start_session(client, "carol")
    assert names[0] not in client.get("/candidates").text  # not shared with carol


def test_rerun_upstream_clears_the_candidate_index(client, settings, api):
    from sqlmodel import select

    from jobs.db import session_scope
    from jobs.models import Candidate

    task_id = upload(client, fits_bytes()).json()["id"]
    seed_candidates(settings, task_id)
    client.post(f"/api/tasks/{task_id}/steps/inspect", json={}, headers=api)
    with session_scope() as session:
        assert session.exec(select(Candidate).where(Candidate.task_id == task_id)).all() == []


def test_api_lists_candidates_with_votes(client, settings, api):
    task_id = upload(client, fits_bytes()).json()["id"]
    names = seed_candidates(settings, task_id)
    client.post(
        f"/tasks/{task_id}/candidates/transients_simple/{names[2]}/vote", data={"value": "bogus"}
    )
    rows = client.get(f"/api/tasks/{task_id}/candidates/transients_simple", headers=api).json()
    assert [r["key"] for r in rows] == [names[1], names[0], names[2]]  # brightest first
    assert rows[2]["votes"] == {"bogus": 1}
    assert rows[1]["cutout"] == f"candidates_simple/{names[0]}.png"
    assert client.get(f"/api/tasks/{task_id}/candidates/inspect", headers=api).status_code == 404
