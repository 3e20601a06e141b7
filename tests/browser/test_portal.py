"""End to end in a real browser: upload, run inspection with a live log, view in JS9."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_upload_inspect_and_view(live_server, browser, real_data, output_dir):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server}/tasks/")
    page.fill("#upload-title", "SAAO raw frame")
    page.set_input_files("#file-input", str(real_data / "saao1m_raw_a8280271.fits"))
    page.wait_for_url("**/tasks/1", timeout=30_000)
    assert page.locator("#task-title input").input_value() == "SAAO raw frame"
    assert page.locator("#step-subtraction").inner_text().count("not built yet") == 1

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
