"""Embed links: a read-only view framed only by allowed origins, revocable."""

from __future__ import annotations

from tests.conftest import make_user, start_session
from tests.web.test_tasks import fits_bytes, upload


def test_embed_link_shows_the_task_and_can_be_revoked(client, settings):
    from jobs.settings import configure

    configure(data_dir=settings.data_dir, embed_origins="https://dash.example.org")
    task_id = upload(client, fits_bytes(), "m51.fits", "M51 tonight").json()["id"]
    page = client.post(f"/tasks/{task_id}/links/")
    url = page.text.split('id="new-link">')[1].split("<")[0]
    path = url[url.index("/embed/") :]
    from tests.web.test_candidates import seed_candidates

    names = seed_candidates(settings, task_id)
    client.cookies.clear()  # a dashboard has no session
    embed = client.get(path)
    assert embed.status_code == 200 and "M51 tonight" in embed.text
    assert names[1] in embed.text  # the candidate list, with its cutouts
    assert client.get(f"{path}/files/candidates_simple/{names[0]}.png").status_code == 200
    policy = embed.headers["content-security-policy"]
    assert policy == "frame-ancestors 'self' https://dash.example.org"
    assert client.get(f"{path}/files/image.fits").status_code == 404  # pictures only
    assert client.get(f"{path}/files/../../secret.key").status_code == 404
    start_session(client, "admin")
    assert client.get("/tasks/").headers["content-security-policy"] == "frame-ancestors 'self'"
    link_id = page.text.split("/links/")[1].split("/revoke")[0]
    client.post(f"/tasks/{task_id}/links/{link_id}/revoke")
    client.cookies.clear()
    assert client.get(path).status_code == 404


def test_only_owner_or_admin_creates_links(client):
    make_user("viewer2")
    task_id = upload(client, fits_bytes()).json()["id"]
    start_session(client, "viewer2")
    assert client.post(f"/tasks/{task_id}/links/").status_code == 404
