"""Looks: dark mode follows the system setting; the page reads well at 360 px wide and
on a wide screen."""

import pytest
from playwright.sync_api import expect

from tests.browser.browser_support import card, css, luminance, post, wait_job

pytestmark = pytest.mark.browser


def _colours(page):
    body = page.locator("body")
    panel = card(page, "demo_tick")
    return {
        "background": luminance(css(body, "background-color")),
        "text": luminance(css(body, "color")),
        "card": luminance(css(panel, "background-color")),
        "card text": luminance(css(panel.locator(".job-name"), "color")),
    }


def test_dark_mode_follows_the_system_setting(signed_in, server):
    light = _colours(signed_in(server, color_scheme="light"))
    dark = _colours(signed_in(server, color_scheme="dark"))

    assert light["background"] > 0.8 and light["card"] > 0.8, light
    assert light["text"] < 0.3 and light["card text"] < 0.3, light
    assert dark["background"] < 0.15 and dark["card"] < 0.2, dark
    assert dark["text"] > 0.7 and dark["card text"] > 0.7, dark


def _no_horizontal_scroll(page, width):
    scroll_width = page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll_width <= width, f"{scroll_width} px of content in a {width} px window"
    outside = page.locator("main *:visible").evaluate_all(
        """(els, width) => els.filter(el => {
            const box = el.getBoundingClientRect();
            return box.width > 0 && (box.left < -0.5 || box.right > width + 0.5)
                && !el.closest('.table-wrap');
        }).map(el => el.outerHTML.slice(0, 80))""",
        width,
    )
    assert outside == [], outside


def test_it_is_readable_360_px_wide(signed_in, server, api):
    post(api, "/api/jobs/demo_fail/run", status=202)
    post(api, "/api/jobs/demo_tick/pause")
    wait_job(api, "demo_fail", lambda job: job["status"] == "error")
    page = signed_in(server, viewport={"width": 360, "height": 740})
    expect(card(page, "demo_fail").locator('[data-field="last_error"]')).to_be_visible()
    _no_horizontal_scroll(page, 360)
    # One card per row, using the width there is.
    boxes = [card(page, n).bounding_box() for n in ("demo_tick", "demo_slow", "demo_fail")]
    assert len({round(box["x"]) for box in boxes}) == 1
    assert all(box["width"] >= 300 for box in boxes), boxes
    # Text stays at a readable size.
    assert float(css(card(page, "demo_fail").locator(".description"), "fontSize")[:-2]) >= 14

    # With an editor open, and with the history dialog open, nothing spills either.
    card(page, "demo_slow").get_by_label("Change the interval of demo_slow").click()
    expect(card(page, "demo_slow").get_by_label("Run every")).to_be_visible()
    _no_horizontal_scroll(page, 360)
    card(page, "demo_fail").get_by_role("link", name="History of demo_fail").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360, box
    _no_horizontal_scroll(page, 360)


def test_it_uses_a_wide_screen_well(signed_in, server):
    page = signed_in(server, viewport={"width": 1920, "height": 1080})
    _no_horizontal_scroll(page, 1920)
    lefts = {
        round(box["x"])
        for box in page.locator(".card").evaluate_all(
            "cs => cs.map(c => { const b = c.getBoundingClientRect(); return {x: b.left}; })"
        )
    }
    assert len(lefts) >= 3, f"cards in {len(lefts)} columns"
    # Lines stay a readable length: the content is capped and centred.
    main = page.locator("main").bounding_box()
    assert main["width"] <= 1400 and abs(main["x"] - (1920 - main["x"] - main["width"])) <= 2
