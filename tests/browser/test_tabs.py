"""Seven tabs on the jobs page in one browser: a browser gives a site six HTTP/1.1
connections, so the tabs share one event stream (a Web Lock elects the tab that holds
it, a BroadcastChannel passes its events on) and a control still goes through."""

import time

import pytest
from playwright.sync_api import expect

from tests.browser.browser_support import LIVE, api_job, badge, is_stream, open_jobs_page, sign_in

pytestmark = pytest.mark.browser

TABS = 7


class OpenStreams:
    """How many event streams the context's tabs have open, and the most at any moment.
    A stream ends when its request finishes or fails, or when its tab closes."""

    def __init__(self, context):
        self.opened = 0
        self.pending = set()
        self.most = 0
        context.on("request", self._started)
        context.on("requestfinished", self._ended)
        context.on("requestfailed", self._ended)
        context.on("page", lambda page: page.on("close", self._tab_closed))

    @property
    def open(self):
        return len(self.pending)

    def _started(self, request):
        if is_stream(request):
            self.opened += 1
            self.pending.add(request)
            self.most = max(self.most, self.open)

    def _ended(self, request):
        self.pending.discard(request)

    def _tab_closed(self, page):
        self.pending = {r for r in self.pending if r.frame.page != page}


def test_seven_tabs_share_one_stream_and_a_control_from_the_last_completes_quickly(
    new_context, server, api
):
    context = new_context()
    streams = OpenStreams(context)
    first = context.new_page()
    sign_in(first, server)
    tabs = [first] + [open_jobs_page(context, server) for _ in range(TABS - 1)]
    for tab in tabs:
        expect(tab.locator("#filters")).to_be_visible()  # the script runs in every tab
        expect(badge(tab, "demo_tick")).not_to_have_text("paused")

    last = tabs[-1]
    last.bring_to_front()
    pause = last.get_by_role("button", name="Pause demo_tick")
    with last.expect_response(lambda r: r.url.endswith("/api/jobs/demo_tick/pause")) as answer:
        started = time.monotonic()
        pause.click()
    response = answer.value
    response.finished()
    took = time.monotonic() - started
    assert response.status == 200
    assert took < 2.0, f"the control took {took:.2f} s"

    for number, tab in enumerate(tabs, start=1):
        expect(badge(tab, "demo_tick"), f"tab {number}").to_have_text("paused", timeout=LIVE)
    assert api_job(api, "demo_tick")["paused"] is True
    assert streams.most == 1, f"{streams.most} streams open at once"
    assert streams.open == 1


def test_when_the_streaming_tab_closes_another_takes_over(new_context, server, api):
    context = new_context()
    streams = OpenStreams(context)
    first = context.new_page()
    sign_in(first, server)
    second = open_jobs_page(context, server)
    third = open_jobs_page(context, server)
    assert streams.opened == 1

    with second.expect_response(lambda r: is_stream(r) and r.status == 200, timeout=LIVE):
        first.close()  # it held the stream

    api.post_json("/api/jobs/demo_slow/pause")
    for tab in (second, third):
        expect(badge(tab, "demo_slow")).to_have_text("paused", timeout=LIVE)
    assert streams.most == 1
