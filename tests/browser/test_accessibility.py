"""Accessible: every control reachable and usable by keyboard with a visible focus, a
name for every control, status never by colour alone, and no serious or critical
finding from axe-core."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.browser_support import (
    STATUSES,
    api_job,
    badge,
    card,
    css,
    fact,
    post,
    sign_in,
    wait_job,
)

pytestmark = pytest.mark.browser

FOCUSED = """() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return {
        key: el.getAttribute('aria-label') || el.id
            || [el.closest('.card')?.id, el.textContent.trim().slice(0, 40)]
                .filter(Boolean).join(': '),
        tag: el.tagName,
        focusVisible: el.matches(':focus-visible'),
        outline: style.outlineStyle !== 'none' ? parseFloat(style.outlineWidth) : 0,
    };
}"""


def test_every_control_is_reachable_by_tab_with_a_visible_focus(page):
    expected = {"live-toggle", "filter-category", "filter-status", "filter-search", "Sign out"}
    for name in page.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.job)"):
        expected |= {
            f"Run Now: {name}",
            f"Pause {name}",
            f"Change the interval of {name}",
            f"History of {name}",
        }
    reached = set()
    page.locator("body").focus()
    for _ in range(200):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused["tag"] == "BODY":
            break
        assert focused["focusVisible"] and focused["outline"] >= 2, focused
        if focused["key"] in reached:
            break  # round again
        reached.add(focused["key"])
    missing = expected - reached
    assert not missing, f"not reachable by Tab: {sorted(missing)}"


def test_controls_work_from_the_keyboard(page, api):
    # Enter on Run Now.
    before = api_job(api, "demo_fail")["run_count"]
    run = card(page, "demo_fail").get_by_role("button", name="Run Now: demo_fail")
    run.focus()
    page.keyboard.press("Enter")
    expect(fact(page, "demo_fail", "run_count")).to_have_text(str(before + 1))
    expect(badge(page, "demo_fail")).to_have_text("error")

    # Space on Pause, and again on what is now Resume.
    toggle = card(page, "demo_tick").locator("button.toggle")
    toggle.focus()
    page.keyboard.press(" ")
    expect(badge(page, "demo_tick")).to_have_text("paused")
    expect(toggle).to_be_focused()
    page.keyboard.press(" ")
    expect(badge(page, "demo_tick")).not_to_have_text("paused")

    # Enter opens the interval editor with its field focused; Enter saves.
    summary = card(page, "demo_slow").get_by_label("Change the interval of demo_slow")
    summary.focus()
    page.keyboard.press("Enter")
    field = card(page, "demo_slow").get_by_label("Run every")
    expect(field).to_be_focused()
    page.keyboard.type("2m")
    page.keyboard.press("Enter")
    expect(field).to_be_hidden()  # saved: the editor closes
    expect(fact(page, "demo_slow", "interval")).to_have_text(re.compile(r"^2m\b"))
    # Escape discards, and puts the focus back on the Interval button.
    summary.focus()
    page.keyboard.press("Enter")
    expect(field).to_be_focused()
    page.keyboard.type("9m")
    page.keyboard.press("Escape")
    expect(field).to_be_hidden()
    expect(summary).to_be_focused()
    wait_job(api, "demo_slow", lambda job: job["interval_seconds"] == 120)

    # Enter on Pause live updates.
    live = page.locator("#live-toggle")
    live.focus()
    page.keyboard.press("Enter")
    expect(live).to_have_accessible_name("Resume live updates")
    page.keyboard.press("Enter")
    expect(live).to_have_accessible_name("Pause live updates")


def test_status_is_never_shown_by_colour_alone(page, api):
    post(api, "/api/jobs/demo_fail/run", status=202)
    post(api, "/api/jobs/demo_tick/pause")
    expect(badge(page, "demo_fail")).to_have_text("error")
    expect(badge(page, "demo_tick")).to_have_text("paused")
    for text in page.locator(".badge-text").all_inner_texts():
        assert text in STATUSES
    # Each status has its own shape of dot as well as its own word and colour.
    shapes = {
        name: css(card(page, name).locator(".badge .dot"), "borderRadius")
        + css(card(page, name).locator(".badge .dot"), "transform")
        for name in ("demo_fail", "demo_tick", "dns_zone_check")
    }
    assert len(set(shapes.values())) == 3, shapes
    expect(page.locator("#scheduler-state .text")).to_have_text(
        re.compile("^Scheduler (running|stopped)$")
    )
    expect(fact(page, "demo_fail", "last_error")).to_contain_text("Last error:")
    expect(fact(page, "demo_fail", "chart_caption")).to_contain_text("failed")


def test_every_control_has_a_name_a_screen_reader_reads(page):
    unnamed = page.locator("button, summary, a, input, select").evaluate_all(
        """els => els.filter(el => el.checkVisibility()).map(el => {
            const label = el.getAttribute('aria-label') || el.labels?.[0]?.textContent
                || el.textContent;
            return [el.outerHTML.slice(0, 80), (label || '').trim()];
        }).filter(([, label]) => !label).map(([html]) => html)"""
    )
    assert unnamed == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious(new_context, server, api, axe_script, scheme):
    # The page's Content-Security-Policy allows only its own scripts, and add_script_tag
    # puts axe's code inline: this one context bypasses the CSP so axe can be injected.
    context = new_context(bypass_csp=True, color_scheme=scheme)
    page = context.new_page()
    sign_in(page, server)
    # Every status on screen at once: running, paused, error and idle.
    post(api, "/api/jobs/demo_slow/run", status=202)
    expect(badge(page, "demo_slow")).to_have_text("running")
    post(api, "/api/jobs/demo_fail/run", status=202)
    post(api, "/api/jobs/demo_tick/pause")
    expect(badge(page, "demo_fail")).to_have_text("error")
    expect(badge(page, "demo_tick")).to_have_text("paused")
    page.add_script_tag(path=str(axe_script))

    findings = _serious(page)
    # The interval editor and the history dialog open, too.
    card(page, "demo_slow").get_by_label("Change the interval of demo_slow").click()
    card(page, "demo_slow").get_by_label("Run every").fill("abc")
    card(page, "demo_slow").get_by_role("button", name="Save").click()
    expect(card(page, "demo_slow").locator(".field-error")).to_be_visible()
    findings += _serious(page)
    card(page, "demo_fail").get_by_role("link", name="History of demo_fail").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    findings += _serious(page)

    assert findings == [], "\n".join(findings)


def _serious(page):
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    assert len(results["passes"]) > 20, "axe checked next to nothing"
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at "
        + ", ".join(str(node["target"]) for node in v["nodes"][:5])
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]
