"""Working together in real browsers: accounts, sharing, a colleague voting on a phone,
live notices, and the embed view framed by an allowed origin only."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from tests.conftest import PASSWORD, live_client

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard_ports():
    return _free_port(), _free_port()


@pytest.fixture
def live_server_env(dashboard_ports):
    allowed, _other = dashboard_ports
    return {"SKYSIFT_EMBED_ORIGINS": f"http://127.0.0.1:{allowed}"}


def serve_page(port: int, html: str) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def seed_candidates(data_dir, task_id: int) -> str:
    """Write a candidate table as the transients step does and index it in the portal's DB."""
    from astropy.table import Table

    from jobs import db
    from jobs.candidates import index_candidates
    from jobs.settings import configure

    configure(data_dir=data_dir)
    folder = data_dir / "tasks" / str(task_id)
    name = "J100000.00+200000.0"
    Table(
        {
            "ra": [150.0],
            "dec": [20.0],
            "x": [30.0],
            "y": [30.0],
            "jname": [name],
            "mag_calib": [19.2],
            "mag_calib_err": [0.05],
            "flux": [100.0],
            "fluxerr": [5.0],
        }
    ).write(folder / "candidates_simple.fits")
    # its blink strip, as the step draws it: a star that is in the image, not in the atlas
    import numpy as np

    from pipeline.cutouts import BLINK_SUFFIX, make_cutout, write_blink_strip

    yy, xx = np.mgrid[0:41, 0:41]
    star = 1000 * np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / 8.0)
    sky = np.random.default_rng(1).normal(100, 3, (41, 41))
    cutout = make_cutout(
        20,
        20,
        41,
        [("image", sky + star, "image", "image", np.nan), ("atlas", sky, "PS1", "image", np.nan)],
    )
    (folder / "candidates_simple").mkdir(exist_ok=True)
    strip = folder / "candidates_simple" / f"{name}{BLINK_SUFFIX}"
    write_blink_strip(cutout, [("image", "image"), ("atlas", "PS1 r")], strip)
    with db.session_scope() as session:
        index_candidates(session, task_id, "transients_simple", None)
    db.dispose_engines()
    return name


def sign_in(browser, url: str, username: str, viewport=None):
    context = browser.new_context(viewport=viewport or {"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/tasks/")
    return page


def test_share_vote_notice_and_embed(
    live_server, browser, real_data, output_dir, tmp_path, dashboard_ports
):
    admin_api = live_client(live_server, "admin")  # first account, via /setup
    task_id = admin_api.post(
        "/tasks/upload",
        content=(real_data / "saao1m_raw_a8280271.fits").read_bytes(),
        headers={"x-filename": "saao.fits", "accept": "application/json"},
    ).json()["id"]
    name = seed_candidates(tmp_path / "data", task_id)

    admin = sign_in(browser, live_server, "admin")
    admin.goto(f"{live_server}/admin/")
    admin.fill("form[action='/admin/groups'] input[name=name]", "night-shift")
    admin.click("form[action='/admin/groups'] button")
    admin.fill("form[action='/admin/users'] input[name=username]", "bob")
    admin.fill("form[action='/admin/users'] input[name=password]", PASSWORD)
    admin.click("form[action='/admin/users'] button")
    with admin.expect_navigation():
        admin.check("input[aria-label='bob in night-shift']")
    admin.goto(f"{live_server}/tasks/{task_id}")
    admin.select_option("#sharing select[name=access]", "view")
    admin.click("#sharing button[type=submit]")
    admin.wait_for_selector("#sharing >> text=night-shift (view)")
    admin.goto(f"{live_server}/tasks/{task_id}/candidates/transients_simple/")

    import sqlite3

    con = sqlite3.connect(tmp_path / "data" / "skysift.db")
    print(
        "DEBUG",
        con.execute("select * from membership").fetchall(),
        con.execute("select * from taskshare").fetchall(),
        con.execute("select id, username from user").fetchall(),
    )
    bob = sign_in(browser, live_server, "bob", viewport={"width": 390, "height": 844})
    assert "saao.fits" in bob.inner_text("#task-list")
    bob.goto(f"{live_server}/tasks/{task_id}/candidates/transients_simple/")
    # the cutout blinks by tap and by key, without leaving the page
    blink = bob.locator(".blink").first
    assert blink.get_attribute("data-frame") == "image"
    blink.locator(".blink-view").click()
    assert blink.get_attribute("data-frame") == "PS1 r"
    blink.focus()
    bob.keyboard.press("ArrowRight")
    assert blink.inner_text().startswith("image")
    assert blink.locator("img").evaluate("i => i.complete && i.naturalWidth") == 82
    bob.click(f"[id='vet-{name}'] button.vote.real")
    bob.wait_for_selector("button.vote.real.mine")
    bob.screenshot(path=str(output_dir / "vetting-390px.png"), full_page=True)
    width = bob.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the vetting page scrolls sideways on a phone ({width} px)"

    # the admin's open page is told, live, and shows bob's vote
    admin.wait_for_function("Number(document.body.dataset.sseNotices || 0) > 0", timeout=15_000)
    assert "bob voted real" in admin.inner_text("#toasts")

    # embed link: framed by the allowed dashboard, refused elsewhere
    admin.goto(f"{live_server}/tasks/{task_id}")
    admin.click("#links summary")
    admin.click("#links button:has-text('Create an embed link')")
    link = admin.inner_text("#new-link")
    allowed_port, other_port = dashboard_ports
    frame_page = (
        f'<html><body><iframe id="f" src="{link}" width="600" height="400"></iframe></body></html>'
    )
    servers = [serve_page(allowed_port, frame_page), serve_page(other_port, frame_page)]
    try:
        dash = browser.new_page()
        dash.goto(f"http://127.0.0.1:{allowed_port}/")
        frame = dash.frame_locator("#f")
        assert "saao" in frame.locator("main").inner_text(timeout=15_000)
        dash.screenshot(path=str(output_dir / "embed-allowed.png"))
        other = browser.new_page()
        other.goto(f"http://127.0.0.1:{other_port}/")
        other.wait_for_timeout(1500)
        blocked = other.frames[1] if len(other.frames) > 1 else None
        content = blocked.content() if blocked else ""
        assert "saao" not in content
    finally:
        for server in servers:
            server.shutdown()
    admin_api.close()
