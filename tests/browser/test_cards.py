"""The job cards: every field of the spec's table, errors in red, times that read
naturally and tick, and a progress bar while a job reports progress."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.browser_support import (
    AGO,
    IN,
    SLOW_RUN,
    STATUSES,
    api_job,
    badge,
    card,
    css,
    fact,
    is_reddish,
    jobs_by_name,
    post,
    run_button,
    wait_job,
)

pytestmark = pytest.mark.browser


def test_each_card_shows_every_field_of_the_spec_table(page, api):
    post(api, "/api/jobs/demo_fail/run", status=202)
    wait_job(api, "demo_fail", lambda job: job["last_error"])
    jobs = jobs_by_name(api)
    expect(page.locator(".card")).to_have_count(len(jobs))
    expect(fact(page, "demo_fail", "last_error")).to_be_visible()

    for name, job in jobs.items():
        shown = card(page, name)
        expect(shown.get_by_role("heading", name=name)).to_be_visible()
        expect(shown.locator(".category")).to_have_text(job["category"])
        expect(badge(page, name)).to_have_text(re.compile("^(" + "|".join(STATUSES) + ")$"))
        expect(shown.locator(".description")).to_have_text(job["description"])
        expect(shown.locator("dt")).to_have_text(["Interval", "Run count", "Last run", "Next run"])
        expect(fact(page, name, "interval")).to_have_text(job["interval"])
        expect(fact(page, name, "run_count")).to_have_text(re.compile(r"^\d+$"))
        expect(fact(page, name, "last_run")).to_have_text(re.compile(f"{AGO.pattern}|^never$"))
        expect(fact(page, name, "next_run")).to_have_text(IN)
        if name != "demo_fail":
            expect(fact(page, name, "last_error")).to_be_hidden()

    # One job whose every value is known: demo_fail has run once, by hand, and failed.
    expect(badge(page, "demo_fail")).to_have_text("error")
    expect(fact(page, "demo_fail", "run_count")).to_have_text(str(jobs["demo_fail"]["run_count"]))
    expect(fact(page, "demo_fail", "last_run")).to_have_text(re.compile(r"^(now|\d+ s ago)$"))
    expect(fact(page, "demo_fail", "next_run")).to_have_text(re.compile(r"^in \d+ min$"))
    expect(fact(page, "demo_fail", "last_error")).to_have_text("Last error: demo failure")
    # A job that never ran says so; a built-in one is untouched by the tests.
    expect(fact(page, "db_maintenance", "last_run")).to_have_text("never")
    expect(badge(page, "db_maintenance")).to_have_text("idle")
    expect(fact(page, "db_maintenance", "run_count")).to_have_text("0")
    expect(fact(page, "db_maintenance", "next_run")).to_have_text(re.compile(r"^in \d+ min$"))


def test_a_job_that_raises_shows_its_message_in_red(page, api):
    run_button(page, "demo_fail").click()

    error = fact(page, "demo_fail", "last_error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("demo failure")
    expect(badge(page, "demo_fail")).to_have_text("error")
    message = error.locator(".text")
    assert is_reddish(css(message, "color")), css(message, "color")
    assert api_job(api, "demo_fail")["last_error"] == "demo failure"


def test_relative_times_read_naturally_tick_every_second_and_show_the_exact_time(page, api):
    post(api, "/api/jobs/demo_fail/run", status=202)
    job = wait_job(api, "demo_fail", lambda job: job["status"] == "error")
    last_run = fact(page, "demo_fail", "last_run")
    expect(last_run).to_have_attribute("datetime", job["last_run"])
    expect(last_run).to_have_text(re.compile(r"^(now|\d+ s ago)$"))
    # Ticks every second: it reads one second more, then one more, with no new data.
    text = last_run.inner_text()
    seconds = 0 if text == "now" else int(text.split()[0])
    for later in (seconds + 1, seconds + 2):
        expect(last_run).to_have_text(f"{later} s ago", timeout=2_500)

    # Further away, minutes: demo_fail next runs an hour after the server started.
    expect(fact(page, "demo_fail", "next_run")).to_have_text(re.compile(r"^in 5\d min$"))
    # The exact time is in the tooltip, in the reader's own format.
    for time_element in (last_run, fact(page, "demo_fail", "next_run")):
        exact = time_element.evaluate(
            "el => new Date(el.getAttribute('datetime')).toLocaleString()"
        )
        expect(time_element).to_have_attribute("title", exact)
    assert re.fullmatch(r"\d+/\d+/\d{4}, \d+:\d\d:\d\d [AP]M", last_run.get_attribute("title"))


def test_a_running_job_shows_a_progress_bar_that_fills(page, api):
    progress = fact(page, "demo_slow", "progress")
    expect(progress).to_be_hidden()

    run_button(page, "demo_slow").click()

    expect(progress).to_be_visible()
    bar = progress.locator("progress")
    expect(bar).to_have_accessible_name("Progress of demo_slow")
    page.wait_for_function(
        "el => el.value > 0 && el.value < 0.6", arg=bar.element_handle(), timeout=SLOW_RUN
    )
    first = bar.evaluate("el => el.value")
    page.wait_for_function(
        "([el, first]) => el.value >= first + 0.2", arg=[bar.element_handle(), first]
    )
    expect(progress.locator(".progress-text")).to_have_text(re.compile(r"^step \d+ of 50$"))
    expect(badge(page, "demo_slow")).to_have_text("idle", timeout=SLOW_RUN)
    expect(progress).to_be_hidden()
