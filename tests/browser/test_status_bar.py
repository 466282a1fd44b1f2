"""The status bar: whether a scheduler is alive anywhere, said in words and colour."""

import pytest
from playwright.sync_api import expect

from tests.browser.browser_support import css, is_greenish, is_reddish

pytestmark = pytest.mark.browser


def test_it_says_scheduler_running_in_green(page):
    state = page.locator("#scheduler-state")
    expect(state).to_have_text("Scheduler running")
    expect(state).to_be_visible()
    assert is_greenish(css(state, "color")), css(state, "color")


def test_without_a_scheduler_anywhere_it_says_scheduler_stopped_in_red(start_server, signed_in):
    # A web-only node on a database no scheduler has ever touched.
    web_only = start_server("web-only", scheduler=False)
    page = signed_in(web_only)
    state = page.locator("#scheduler-state")
    expect(state).to_have_text("Scheduler stopped")
    expect(state).to_be_visible()
    assert is_reddish(css(state, "color")), css(state, "color")
