"""The card controls, clicked: Run Now, Pause/Resume and the Interval editor."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.browser_support import (
    IN,
    SLOW_RUN,
    api_job,
    badge,
    card,
    fact,
    mark_document,
    post,
    run_button,
    run_count,
    same_document,
    toggle_button,
    wait_job,
)

pytestmark = pytest.mark.browser


WATCH_RUN_BUTTON = """name => {
    // Record every moment the card says running while its Run Now button is usable.
    const card = document.getElementById(`job-${name}`);
    const button = card.querySelector("button.run");
    window.__enabledWhileRunning = 0;
    window.__cardChanges = 0;
    new MutationObserver(() => {
        window.__cardChanges += 1;
        const running = card.querySelector(".badge-text").textContent === "running";
        if (running && !button.disabled) window.__enabledWhileRunning += 1;
    }).observe(card, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def test_run_now_runs_the_job_and_the_card_follows_without_a_reload(page, api):
    before = run_count(page, "demo_slow")
    mark_document(page)
    page.evaluate(WATCH_RUN_BUTTON, "demo_slow")
    button = run_button(page, "demo_slow")

    button.click()

    expect(badge(page, "demo_slow")).to_have_text("running")
    expect(button).to_be_disabled()
    expect(badge(page, "demo_slow")).to_have_text("idle", timeout=SLOW_RUN)
    expect(button).to_be_enabled()
    assert page.evaluate("window.__cardChanges") > 0
    assert page.evaluate("window.__enabledWhileRunning") == 0, "Run Now usable during the run"
    expect(fact(page, "demo_slow", "run_count")).to_have_text(str(before + 1))
    expect(fact(page, "demo_slow", "last_run")).to_have_text(re.compile(r"^(now|\d+ s ago)$"))
    assert same_document(page), "the page was reloaded"
    assert api_job(api, "demo_slow")["run_count"] == before + 1


def test_pause_shows_paused_and_the_play_triangle(page, api):
    toggle = toggle_button(page, "demo_tick")
    expect(toggle.locator(".icon-pause")).to_be_visible()
    expect(toggle.locator(".icon-play")).to_be_hidden()

    card(page, "demo_tick").get_by_role("button", name="Pause demo_tick").click()

    expect(badge(page, "demo_tick")).to_have_text("paused")
    expect(fact(page, "demo_tick", "next_run")).to_have_text("paused")
    expect(toggle.locator(".icon-play")).to_be_visible()
    expect(toggle.locator(".icon-pause")).to_be_hidden()
    expect(toggle).to_have_accessible_name("Resume demo_tick")
    expect(toggle).to_have_text("Resume")
    assert api_job(api, "demo_tick")["paused"] is True


def test_a_paused_job_still_runs_with_run_now(page, api):
    post(api, "/api/jobs/demo_tick/pause")
    expect(badge(page, "demo_tick")).to_have_text("paused")
    before = api_job(api, "demo_tick")

    run_button(page, "demo_tick").click()

    expect(fact(page, "demo_tick", "run_count")).to_have_text(str(before["run_count"] + 1))
    expect(badge(page, "demo_tick")).to_have_text("paused")
    expect(fact(page, "demo_tick", "next_run")).to_have_text("paused")
    after = api_job(api, "demo_tick")
    assert after["paused"] is True
    assert after["last_run"] != before["last_run"]


def test_resume_restores_the_schedule_and_the_two_bar_icon(page, api):
    post(api, "/api/jobs/demo_tick/pause")
    expect(badge(page, "demo_tick")).to_have_text("paused")
    toggle = toggle_button(page, "demo_tick")

    card(page, "demo_tick").get_by_role("button", name="Resume demo_tick").click()

    expect(badge(page, "demo_tick")).not_to_have_text("paused")
    # demo_tick runs every 5 s: its next run is at most five seconds away.
    expect(fact(page, "demo_tick", "next_run")).to_have_text(re.compile(r"^(now|in [0-5] s)$"))
    expect(toggle.locator(".icon-pause")).to_be_visible()
    expect(toggle.locator(".icon-play")).to_be_hidden()
    expect(toggle).to_have_accessible_name("Pause demo_tick")
    job = api_job(api, "demo_tick")
    assert job["paused"] is False and job["next_run"] is not None


def _open_editor(page, name):
    card(page, name).get_by_label(f"Change the interval of {name}").click()
    field = card(page, name).get_by_label("Run every")
    expect(field).to_be_visible()
    expect(field).to_be_focused()
    return field


def test_interval_save_updates_the_card_and_its_next_run(page, api):
    expect(fact(page, "demo_slow", "interval")).to_have_text("1h")
    field = _open_editor(page, "demo_slow")
    expect(field).to_have_value("1h")

    field.fill("5m")
    card(page, "demo_slow").get_by_role("button", name="Save").click()

    expect(fact(page, "demo_slow", "interval")).to_have_text(re.compile(r"^5m\b"))
    expect(field).to_be_hidden()  # the editor closed
    # The next run moved from about an hour away to at most five minutes away.
    expect(fact(page, "demo_slow", "next_run")).to_have_text(re.compile(r"^in ([0-5] min|\d+ s)$"))
    job = wait_job(api, "demo_slow", lambda job: job["interval_seconds"] == 300)
    next_run = fact(page, "demo_slow", "next_run")
    expect(next_run).to_have_attribute("datetime", job["next_run"])


@pytest.mark.parametrize("how", ["Cancel", "Escape"])
def test_interval_cancel_and_escape_discard_the_change(page, api, how):
    field = _open_editor(page, "demo_slow")
    field.fill("7m")

    if how == "Cancel":
        card(page, "demo_slow").get_by_role("button", name="Cancel").click()
    else:
        field.press("Escape")

    expect(field).to_be_hidden()
    expect(fact(page, "demo_slow", "interval")).to_have_text("1h")
    expect(fact(page, "demo_slow", "next_run")).to_have_text(IN)
    assert api_job(api, "demo_slow")["interval_seconds"] == 3600
    # Opened again, the editor starts from the job's interval, not the discarded text.
    field = _open_editor(page, "demo_slow")
    expect(field).to_have_value("1h")


def test_a_bad_interval_shows_an_inline_error_and_changes_nothing(page, api):
    before = api_job(api, "demo_slow")
    field = _open_editor(page, "demo_slow")
    field.fill("abc")

    card(page, "demo_slow").get_by_role("button", name="Save").click()

    error = card(page, "demo_slow").locator(".field-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("30s")  # it says what to write instead
    expect(field).to_be_visible()  # still open, to fix the text
    expect(field).to_be_focused()
    expect(fact(page, "demo_slow", "interval")).to_have_text("1h")
    expect(card(page, "demo_slow").locator('[data-field="last_error"]')).to_be_hidden()
    after = api_job(api, "demo_slow")
    assert after["interval_seconds"] == before["interval_seconds"] == 3600
    assert after["next_run"] == before["next_run"]


def _reset_button(page, name):
    return card(page, name).get_by_role("button", name=re.compile(r"^Reset to default"))


def test_reset_to_default_is_offered_only_while_the_interval_is_changed(page, api):
    _open_editor(page, "demo_slow")
    expect(_reset_button(page, "demo_slow")).to_have_count(0)

    post(api, "/api/jobs/demo_slow/interval", {"interval": "5m"})

    expect(fact(page, "demo_slow", "interval")).to_have_text("5m (default 1h)")
    expect(_reset_button(page, "demo_slow")).to_have_text("Reset to default (1h)")
    expect(_reset_button(page, "demo_slow")).to_be_visible()

    post(api, "/api/jobs/demo_slow/reset")

    expect(fact(page, "demo_slow", "interval")).to_have_text("1h")
    expect(_reset_button(page, "demo_slow")).to_have_count(0)


def test_reset_to_default_puts_the_default_interval_back(page, api):
    post(api, "/api/jobs/demo_slow/interval", {"interval": "5m"})
    expect(fact(page, "demo_slow", "interval")).to_have_text("5m (default 1h)")
    field = _open_editor(page, "demo_slow")
    mark_document(page)

    card(page, "demo_slow").get_by_role("button", name="Reset to default (1h)").click()

    expect(fact(page, "demo_slow", "interval")).to_have_text("1h")
    expect(field).to_be_hidden()  # the editor closed
    expect(card(page, "demo_slow").get_by_label("Change the interval of demo_slow")).to_be_focused()
    expect(fact(page, "demo_slow", "next_run")).to_have_text(IN)
    assert same_document(page), "the page was reloaded"
    job = wait_job(api, "demo_slow", lambda job: not job["interval_overridden"])
    assert job["interval_seconds"] == 3600
    # Opened again, the editor starts from the default and offers no reset.
    field = _open_editor(page, "demo_slow")
    expect(field).to_have_value("1h")
    expect(_reset_button(page, "demo_slow")).to_have_count(0)


def test_reset_to_default_by_keyboard(page, api):
    post(api, "/api/jobs/demo_slow/interval", {"interval": "5m"})
    expect(fact(page, "demo_slow", "interval")).to_have_text("5m (default 1h)")
    summary = card(page, "demo_slow").get_by_label("Change the interval of demo_slow")
    summary.focus()
    page.keyboard.press("Enter")
    expect(card(page, "demo_slow").get_by_label("Run every")).to_be_focused()

    for _ in range(3):  # past Save and Cancel
        page.keyboard.press("Tab")
    expect(_reset_button(page, "demo_slow")).to_be_focused()
    page.keyboard.press("Enter")

    expect(fact(page, "demo_slow", "interval")).to_have_text("1h")
    expect(summary).to_be_focused()
    wait_job(api, "demo_slow", lambda job: not job["interval_overridden"])
