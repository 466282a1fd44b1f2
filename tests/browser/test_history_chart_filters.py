"""What an all-day page needs: each job's run history in a dialog, a duration chart on
each card with failures marked, and filters that survive a reload."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.browser_support import LIVE, card, fact, post, wait_job

pytestmark = pytest.mark.browser


def test_history_opens_in_a_dialog_on_the_same_page(page, api):
    post(api, "/api/jobs/demo_fail/run", status=202)
    wait_job(api, "demo_fail", lambda job: job["status"] == "error")
    url = page.url
    history_button = card(page, "demo_fail").get_by_role("link", name="History of demo_fail")

    history_button.click()

    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("demo_fail: recent runs")
    expect(dialog.get_by_role("columnheader")).to_have_text(
        ["Started", "Duration", "Outcome", "Trigger", "Details"]
    )
    newest = dialog.get_by_role("row").nth(1)
    cells = newest.get_by_role("cell")
    expect(cells.nth(0)).to_have_text(re.compile(r"^(now|\d+ s ago)$"))
    expect(cells.nth(0).locator("time")).to_have_attribute("title", re.compile(r"\d:\d\d:\d\d"))
    expect(cells.nth(1)).to_have_text(re.compile(r"^\d+ ms$"))
    expect(cells.nth(2)).to_have_text("error")
    expect(cells.nth(3)).to_have_text("manual by admin")
    expect(cells.nth(4)).to_contain_text("demo failure")
    log = cells.nth(4).locator("pre.log")
    expect(log).to_be_hidden()
    cells.nth(4).get_by_text("Log and traceback").click()
    expect(log).to_have_text("INFO about to fail on purpose")
    expect(cells.nth(4).locator("pre.traceback")).to_contain_text("RuntimeError: demo failure")
    assert page.url == url, "opening the history left the page"

    dialog.get_by_role("button", name="Close history").click()
    expect(dialog).to_be_hidden()
    expect(history_button).to_be_focused()
    assert page.url == url


def test_history_shows_scheduled_runs_and_closes_with_escape(page, api):
    # demo_tick runs every five seconds on its own.
    wait_job(api, "demo_tick", lambda job: job["run_count"] >= 1, timeout=10)
    history_button = card(page, "demo_tick").get_by_role("link", name="History of demo_tick")
    history_button.focus()
    page.keyboard.press("Enter")

    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    newest = dialog.get_by_role("row").nth(1).get_by_role("cell")
    expect(newest.nth(2)).to_have_text("ok")
    expect(dialog.get_by_role("cell", name="scheduled", exact=True).first).to_be_visible()
    expect(newest.nth(4).locator("pre.log")).to_contain_text("tick (", use_inner_text=False)

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(history_button).to_be_focused()


def test_each_card_charts_its_recent_runs_with_failures_marked(page, api):
    post(api, "/api/jobs/demo_fail/run", status=202)
    wait_job(api, "demo_fail", lambda job: job["status"] == "error")
    wait_job(api, "demo_tick", lambda job: job["run_count"] >= 1, timeout=10)

    failed = fact(page, "demo_fail", "chart")
    expect(failed.locator("rect.bar-failed").first).to_be_attached()
    expect(failed.locator("text.bar-mark").first).to_have_text("×")
    expect(fact(page, "demo_fail", "chart_caption")).to_have_text(
        re.compile(r"^last (run|\d+ runs), \d+ failed")
    )
    assert not fact(page, "demo_fail", "chart_caption").inner_text().endswith(" 0 failed")

    ok = fact(page, "demo_tick", "chart")
    expect(ok.locator("rect.bar").first).to_be_attached()
    expect(ok.locator("rect.bar-failed")).to_have_count(0)
    expect(fact(page, "demo_tick", "chart_caption")).to_contain_text(", 0 failed")
    # Every card has its chart, labelled for a screen reader.
    expect(page.locator("svg.chart[role=img]")).to_have_count(page.locator(".card").count())
    expect(ok).to_have_attribute(
        "aria-label", re.compile(r"^Durations of recent runs of demo_tick")
    )


def _visible_cards(page):
    return sorted(page.locator(".card:visible").evaluate_all("cs => cs.map(c => c.dataset.job)"))


def test_filters_by_category_status_and_search_and_keeps_them_after_a_reload(page, api):
    category = page.get_by_label("Category")
    status = page.get_by_label("Status")
    search = page.get_by_label("Search")
    everything = page.locator(".card").count()
    expect(page.locator("#filter-count")).to_have_text(f"{everything} jobs")

    category.select_option("demo")
    assert _visible_cards(page) == ["demo_fail", "demo_hang", "demo_slow", "demo_tick"]
    expect(page.locator("#filter-count")).to_have_text(f"Showing 4 of {everything} jobs")

    post(api, "/api/jobs/demo_tick/pause")
    status.select_option("paused")
    expect(card(page, "demo_tick")).to_be_visible(timeout=LIVE)
    expect(page.locator(".card:visible")).to_have_count(1)

    status.select_option("")
    search.fill("FAIL")  # name or description, any case
    expect(page.locator(".card:visible")).to_have_count(1)
    expect(card(page, "demo_fail")).to_be_visible()

    saved = page.evaluate("JSON.parse(localStorage.getItem('codexdns-jobs-filters'))")
    assert saved == {"category": "demo", "status": "", "search": "FAIL"}
    page.reload()
    expect(category).to_have_value("demo")
    expect(status).to_have_value("")
    expect(search).to_have_value("FAIL")
    expect(page.locator(".card:visible")).to_have_count(1)
    expect(card(page, "demo_fail")).to_be_visible()

    search.fill("")
    category.select_option("")
    expect(page.locator(".card:visible")).to_have_count(everything)
    page.reload()
    expect(page.locator(".card:visible")).to_have_count(everything)


def test_a_status_filter_follows_live_changes(page, api):
    page.get_by_label("Status").select_option("paused")
    expect(page.locator(".card:visible")).to_have_count(0)
    post(api, "/api/jobs/demo_slow/pause")
    expect(card(page, "demo_slow")).to_be_visible(timeout=LIVE)
    post(api, "/api/jobs/demo_slow/resume")
    expect(card(page, "demo_slow")).to_be_hidden(timeout=LIVE)
