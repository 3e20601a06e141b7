"""End to end in a real browser: upload, run inspection with a live log, view in JS9."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, live_client

pytestmark = pytest.mark.browser


def test_upload_inspect_and_view(live_server, browser, real_data, output_dir):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A new portal asks for its first (administrator) account.
    page.goto(f"{live_server}/tasks/")
    page.wait_for_url("**/setup")
    page.fill("input[name=username]", "astro")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/tasks/")
    page.fill("#upload-title", "SAAO raw frame")
    page.set_input_files("#file-input", str(real_data / "saao1m_raw_a8280271.fits"))
    page.wait_for_url("**/tasks/1", timeout=30_000)
    assert page.locator("#task-title input").input_value() == "SAAO raw frame"
    assert "Run image subtraction" in page.locator("#step-subtraction").inner_text()

    page.click("#step-inspect button.run")
    page.wait_for_selector("#step-inspect[data-state='done']", timeout=120_000)
    # The log and progress arrived over the event stream, not by polling.
    assert int(page.evaluate("document.body.dataset.sseLog || 0")) > 0
    assert int(page.evaluate("document.body.dataset.sseProgress || 0")) > 0
    section = page.locator("#step-inspect")
    text = section.inner_text()
    assert "gain" in text and "1.9" in text
    page.click("#step-inspect details.logbox summary")
    assert "Inspection finished" in section.locator("pre.log").inner_text()
    page.screenshot(path=str(output_dir / "task-inspected.png"), full_page=True)

    page.goto(f"{live_server}/tasks/1/view/image.fits")
    page.wait_for_selector("#viewer-status[data-loaded='1']", timeout=60_000)
    size = page.evaluate(
        "(() => { const im = JS9.GetImage(); return [im.raw.width, im.raw.height]; })()"
    )
    assert size == [536, 520]
    # Pixels under the cursor come from the FITS data, so JS9 really parsed the image.
    value = page.evaluate("JS9.GetValPos({x: 200, y: 200}).val")
    assert value is not None and float(value) > 0
    page.screenshot(path=str(output_dir / "js9-viewer.png"))
    assert not errors, errors


def test_custom_mask_drawn_in_js9_is_used_by_inspection(
    live_server, browser, real_data, output_dir
):
    client = live_client(live_server)
    content = (real_data / "saao1m_raw_a8280271.fits").read_bytes()
    task_id = client.post(
        "/tasks/upload",
        content=content,
        headers={"x-filename": "saao.fits", "accept": "application/json"},
    ).json()["id"]
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    context.add_cookies(
        [{"name": c.name, "value": c.value, "url": live_server} for c in client.cookies.jar]
    )
    page = context.new_page()
    page.goto(f"{live_server}/tasks/{task_id}/view/image.fits")
    page.wait_for_selector("#viewer-status[data-loaded='1']", timeout=60_000)
    page.evaluate(
        "JS9.AddRegions({shape: 'box', x: 101.5, y: 201.5, width: 40, height: 20, angle: 0})"
    )
    page.click("#mask-save")
    page.wait_for_selector("#mask-status[data-saved='1']", timeout=10_000)
    assert "1 region" in page.inner_text("#mask-status")
    page.screenshot(path=str(output_dir / "mask-editor-phone.png"), full_page=True)

    saved = client.get(f"/tasks/{task_id}/mask/").json()
    assert saved["regions"] == [
        {"shape": "box", "x": 100.5, "y": 200.5, "width": 40, "height": 20, "angle": 0}
    ]
    page.goto(f"{live_server}/tasks/{task_id}")
    page.click("#step-inspect button.run")
    page.wait_for_selector("#step-inspect[data-state='done']", timeout=120_000)
    summary = client.get(f"/api/tasks/{task_id}").json()["steps"]["inspect"]["summary"]
    # A 40×20 box with its edges between pixels covers exactly 800 pixel centres.
    assert summary["mask_counts"]["custom"] == 800, summary["mask_counts"]
    client.close()
