"""Live updates: pausing them freezes the cards, resuming catches up; without the
stream the page polls /api/jobs every 5 s, and stops once the stream is back."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.browser_support import (
    LIVE,
    POLL_PATH,
    STREAM_PATH,
    RequestLog,
    badge,
    css,
    fact,
    is_poll,
    is_stream,
    is_yellowish,
    open_jobs_page,
    post,
    sign_in,
)

pytestmark = pytest.mark.browser

POLL_SECONDS = 5


def test_pause_live_updates_freezes_the_cards_and_resume_catches_up(new_context, server, api):
    context = new_context()
    page = context.new_page()
    sign_in(page, server)
    # A second tab that keeps following: it shows when the change has reached the browser.
    watcher = open_jobs_page(context, server)
    toggle = page.locator("#live-toggle")
    expect(toggle).to_have_accessible_name("Pause live updates")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    indicator = page.locator("#live-paused")
    expect(indicator).to_be_hidden()

    toggle.click()

    expect(toggle).to_have_accessible_name("Resume live updates")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(indicator).to_be_visible()
    expect(indicator).to_have_text("Paused")
    for prop in ("background-color", "color"):
        assert is_yellowish(css(indicator, prop)), (prop, css(indicator, prop))
    frozen_count = fact(page, "demo_fail", "run_count").inner_text()

    post(api, "/api/jobs/demo_slow/pause")
    post(api, "/api/jobs/demo_fail/run", status=202)

    expect(badge(watcher, "demo_slow")).to_have_text("paused", timeout=LIVE)
    expect(badge(watcher, "demo_fail")).to_have_text("error", timeout=LIVE)
    expect(fact(watcher, "demo_fail", "run_count")).not_to_have_text(frozen_count)
    page.wait_for_timeout(500)  # what reached the watcher has long reached this tab
    expect(badge(page, "demo_slow")).not_to_have_text("paused")
    expect(fact(page, "demo_fail", "run_count")).to_have_text(frozen_count)
    expect(fact(page, "demo_fail", "last_error")).to_be_hidden()

    toggle.click()

    expect(toggle).to_have_accessible_name("Pause live updates")
    expect(indicator).to_be_hidden()
    expect(badge(page, "demo_slow")).to_have_text("paused", timeout=LIVE)
    expect(fact(page, "demo_slow", "next_run")).to_have_text("paused")
    expect(fact(page, "demo_fail", "run_count")).not_to_have_text(frozen_count)
    expect(fact(page, "demo_fail", "last_error")).to_contain_text("demo failure")


def test_without_the_stream_it_polls_every_5_s_and_stops_when_the_stream_is_back(
    new_context, server, api
):
    context = new_context()
    page = context.new_page()
    polls = RequestLog(page, is_poll)
    streams = RequestLog(page, is_stream)
    page.route(f"**{STREAM_PATH}", lambda route: route.abort())
    sign_in(page, server, wait_for_stream=False)
    # The page tries the stream, gets nowhere, and reads once at once, then every 5 s.
    _wait_for(page, lambda: len(streams) >= 1 and len(polls) >= 1, timeout=5)
    expect(page.locator("#connection-state")).to_contain_text("every 5 s")
    expect(badge(page, "demo_slow")).not_to_have_text("paused")
    post(api, "/api/jobs/demo_slow/pause")
    _wait_for(page, lambda: len(polls) >= 3, timeout=2 * POLL_SECONDS + 3)
    for gap in polls.gaps()[1:]:
        assert POLL_SECONDS - 0.5 <= gap <= POLL_SECONDS + 1.5, polls.gaps()
    # ...and what the server changed meanwhile reached the card without the stream.
    expect(badge(page, "demo_slow")).to_have_text("paused", timeout=1_000)

    with page.expect_response(lambda r: is_stream(r) and r.status == 200, timeout=15_000):
        page.unroute(f"**{STREAM_PATH}")
    expect(page.locator("#connection-state")).to_be_hidden()
    count = len(polls)
    post(api, "/api/jobs/demo_slow/resume")
    expect(badge(page, "demo_slow")).not_to_have_text("paused", timeout=LIVE)
    # Waiting out more than a polling period is the only way to see it does not poll.
    page.wait_for_timeout((POLL_SECONDS + 1.5) * 1000)
    assert len(polls) == count, f"still polling: {polls.gaps()}"
    expect(fact(page, "demo_slow", "next_run")).to_have_text(re.compile(r"^in \d+ min$"))


def _wait_for(page, condition, timeout):
    """Let the page run (events keep arriving) until ``condition()`` holds."""
    waited = 0.0
    while not condition():
        assert waited < timeout, "condition not met in time"
        page.wait_for_timeout(100)
        waited += 0.1


def test_a_late_poll_answer_does_not_undo_newer_live_updates(new_context, server, api):
    # The page reads /api/jobs once as it starts, next to opening the stream.  Here that
    # answer is held back until the stream has shown a newer state.
    context = new_context()
    page = context.new_page()
    held = []
    page.route(f"**{POLL_PATH}", lambda route: held.append(route))
    sign_in(page, server)
    _wait_for(page, lambda: len(held) >= 1, timeout=5)
    old_answer = held[0].fetch()  # the state before the pause
    post(api, "/api/jobs/demo_fail/pause")
    expect(badge(page, "demo_fail")).to_have_text("paused")

    with page.expect_response(lambda r: is_poll(r.request)):
        held[0].fulfill(response=old_answer)
    page.unroute(f"**{POLL_PATH}")

    page.wait_for_timeout(300)  # the old answer has been handled
    expect(badge(page, "demo_fail")).to_have_text("paused")
    expect(fact(page, "demo_fail", "next_run")).to_have_text("paused")
