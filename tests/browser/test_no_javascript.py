"""With JavaScript off every control is a plain form post: 303 back to the page with
a message saying what happened."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.browser_support import api_job, badge, card, fact, post, sign_in, wait_job

pytestmark = pytest.mark.browser


@pytest.fixture
def page(new_context, server):
    page = new_context(java_script_enabled=False).new_page()
    sign_in(page, server, wait_for_stream=False)
    return page


def _submit(page, button, control):
    """Click ``button`` and return the status of the form post it sends."""
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(f"/{control}")
    ) as answer:
        button.click()
    page.wait_for_load_state()
    return answer.value.status


def _flash(page):
    return page.locator(".flashes")


def test_the_page_works_without_its_script(page):
    assert page.evaluate("1 + 1") == 2  # Playwright still can; the page cannot
    expect(page.locator("#scheduler-state")).to_have_text("Scheduler running")
    expect(page.locator(".card")).not_to_have_count(0)
    # What needs the script stays out of the way.
    expect(page.locator("#live-toggle")).to_be_hidden()
    expect(page.locator("#filters")).to_be_hidden()
    expect(fact(page, "dns_zone_check", "next_run")).to_have_text(re.compile(r"^in \d+ min$"))


def test_run_now_posts_the_form(page, api):
    before = api_job(api, "demo_fail")["run_count"]

    status = _submit(
        page, card(page, "demo_fail").get_by_role("button", name="Run Now: demo_fail"), "run"
    )

    assert status == 303
    assert page.url.endswith("/admin/jobs")
    expect(_flash(page)).to_have_text("demo_fail: started.")
    expect(_flash(page).get_by_role("paragraph")).to_have_class(re.compile("flash-success"))
    wait_job(api, "demo_fail", lambda job: job["run_count"] == before + 1 and job["last_error"])
    page.reload()
    expect(fact(page, "demo_fail", "run_count")).to_have_text(str(before + 1))
    expect(fact(page, "demo_fail", "last_error")).to_contain_text("demo failure")


def test_pause_and_resume_post_the_form(page, api):
    toggle = card(page, "demo_slow").locator("button.toggle")

    assert _submit(page, toggle, "pause") == 303
    expect(_flash(page)).to_have_text("demo_slow: paused.")
    expect(badge(page, "demo_slow")).to_have_text("paused")
    expect(fact(page, "demo_slow", "next_run")).to_have_text("paused")
    expect(toggle).to_have_accessible_name("Resume demo_slow")
    expect(toggle.locator(".icon-play")).to_be_visible()
    expect(toggle.locator(".icon-pause")).to_be_hidden()
    assert api_job(api, "demo_slow")["paused"] is True

    assert _submit(page, toggle, "resume") == 303
    expect(_flash(page)).to_have_text("demo_slow: resumed.")
    expect(badge(page, "demo_slow")).to_have_text("idle")
    expect(fact(page, "demo_slow", "next_run")).to_have_text(re.compile(r"^in \d+ min$"))
    expect(toggle.locator(".icon-pause")).to_be_visible()
    assert api_job(api, "demo_slow")["paused"] is False


def test_the_interval_editor_posts_the_form(page, api):
    shown = card(page, "demo_slow")
    shown.get_by_label("Change the interval of demo_slow").click()
    shown.get_by_label("Run every").fill("5m")

    assert _submit(page, shown.get_by_role("button", name="Save"), "interval") == 303

    expect(_flash(page)).to_have_text("demo_slow: now runs every 5m.")
    expect(fact(page, "demo_slow", "interval")).to_have_text("5m (default 1h)")
    expect(fact(page, "demo_slow", "next_run")).to_have_text(re.compile(r"^in ([0-5] min|\d+ s)$"))
    assert api_job(api, "demo_slow")["interval_seconds"] == 300


def test_a_bad_interval_comes_back_as_an_error_message(page, api):
    shown = card(page, "demo_slow")
    shown.get_by_label("Change the interval of demo_slow").click()
    shown.get_by_label("Run every").fill("abc")

    assert _submit(page, shown.get_by_role("button", name="Save"), "interval") == 303

    message = _flash(page).get_by_role("paragraph")
    expect(message).to_contain_text("demo_slow: ")
    expect(message).to_contain_text("30s")
    expect(message).to_have_class(re.compile("flash-error"))
    expect(fact(page, "demo_slow", "interval")).to_have_text("1h")
    assert api_job(api, "demo_slow")["interval_seconds"] == 3600


def test_reset_to_default_posts_the_form(page, api):
    post(api, "/api/jobs/demo_slow/interval", {"interval": "5m"})
    page.reload()
    shown = card(page, "demo_slow")
    expect(fact(page, "demo_slow", "interval")).to_have_text("5m (default 1h)")
    shown.get_by_label("Change the interval of demo_slow").click()
    reset = shown.get_by_role("button", name="Reset to default (1h)")

    assert _submit(page, reset, "reset") == 303

    expect(_flash(page)).to_have_text("demo_slow: back to its default interval of 1h.")
    expect(fact(page, "demo_slow", "interval")).to_have_text("1h")
    assert api_job(api, "demo_slow")["interval_overridden"] is False
    shown.get_by_label("Change the interval of demo_slow").click()
    expect(shown.get_by_label("Run every")).to_have_value("1h")
    expect(shown.get_by_role("button", name=re.compile("^Reset to default"))).to_have_count(0)


def test_history_is_a_page_of_its_own(page, api):
    wait_job(api, "demo_tick", lambda job: job["run_count"] >= 1, timeout=10)
    card(page, "demo_tick").get_by_role("link", name="History of demo_tick").click()
    page.wait_for_url(re.compile(r"/admin/jobs/demo_tick/history$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("demo_tick")
    expect(page.get_by_role("columnheader")).to_have_text(
        ["Started", "Duration", "Outcome", "Trigger", "Details"]
    )
