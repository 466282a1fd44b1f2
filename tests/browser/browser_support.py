"""What the browser tests share besides fixtures: signing in through the form, finding
things on the jobs page, reading the API, and reading computed colours."""

import re
import time
from pathlib import Path

from tests.server_support import REPO, wait_until

# Playwright's own browser download cannot work here: Debian's Chromium it is.
CHROMIUM = Path("/usr/bin/chromium")
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
DEMO_JOBS = ("demo_tick", "demo_slow", "demo_fail", "demo_hang")
STATUSES = ("idle", "running", "paused", "error")
STREAM_PATH = "/api/jobs/sse"
POLL_PATH = "/api/jobs"
VIEWPORT = {"width": 1280, "height": 900}

# How long a change may take to show: the stream delivers in well under a second,
# the margin is for a busy machine.
LIVE = 10_000
# demo_slow takes about five seconds.
SLOW_RUN = 15_000

AGO = re.compile(r"^(now|\d+ (s|min|h|d) ago)$")
IN = re.compile(r"^(now|in \d+ (s|min|h|d))$")


def path_of(url):
    return "/" + url.split("://", 1)[1].split("/", 1)[1].split("?")[0] if "://" in url else url


def is_stream(message):
    """True for a request or response of the page's event stream."""
    return path_of(message.url) == STREAM_PATH


def is_poll(request):
    """True for the page's polling read of every job."""
    return request.method == "GET" and path_of(request.url) == POLL_PATH


# -- signing in -----------------------------------------------------------------------


def sign_in(page, server, password=None, *, wait_for_stream=True):
    """Sign in through the form at /login, as a person would, and land on the jobs page;
    with ``wait_for_stream``, also wait until the page's live stream has answered."""
    page.goto(f"{server.base_url}/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password or server.admin_password)
    button = page.get_by_role("button", name="Sign in")
    if wait_for_stream:
        with page.expect_response(lambda r: is_stream(r) and r.status == 200):
            button.click()
    else:
        button.click()
    page.wait_for_url(f"{server.base_url}/admin/jobs")


def open_jobs_page(context, server, *, wait_for_stream=False):
    """Another tab on /admin/jobs in an already signed-in context."""
    page = context.new_page()
    if wait_for_stream:
        with page.expect_response(lambda r: is_stream(r) and r.status == 200):
            page.goto(f"{server.base_url}/admin/jobs")
    else:
        page.goto(f"{server.base_url}/admin/jobs")
    return page


# -- the page ------------------------------------------------------------------------


def card(page, name):
    return page.locator(f"#job-{name}")


def badge(page, name):
    return card(page, name).locator(".badge-text")


def fact(page, name, field):
    """The element showing a card's field: interval, run_count, last_run, next_run,
    last_error, progress, chart, chart_caption, status."""
    return card(page, name).locator(f'[data-field="{field}"]')


def run_count(page, name):
    return int(fact(page, name, "run_count").inner_text())


def run_button(page, name):
    return card(page, name).get_by_role("button", name=f"Run Now: {name}")


def toggle_button(page, name):
    return card(page, name).locator("button.toggle")


def mark_document(page):
    """Leave a mark on the loaded document: it survives anything but a reload."""
    page.evaluate("window.__sameDocument = true")


def same_document(page):
    return page.evaluate("window.__sameDocument === true")


# -- the API -------------------------------------------------------------------------


def jobs_by_name(session):
    reply = session.get(POLL_PATH, headers={"Accept": "application/json"})
    assert reply.status == 200, reply.text
    return {job["name"]: job for job in reply.json()["jobs"]}


def api_job(session, name):
    return jobs_by_name(session)[name]


def post(session, path, payload=None, status=200):
    reply = session.post_json(path, payload)
    assert reply.status == status, f"{path}: {reply.status} {reply.text}"
    return reply.json()


def wait_job(session, name, predicate, timeout=20, message=None):
    """The job as the API shows it once ``predicate(job)`` holds."""
    return wait_until(
        lambda: (lambda job: job if predicate(job) else None)(api_job(session, name)),
        timeout=timeout,
        interval=0.1,
        message=message or f"{name} in the expected state",
    )


def restore_demo_jobs(session):
    """Resume the demo jobs, put their intervals back and wait until none is running."""
    for job in jobs_by_name(session).values():
        if job["name"] not in DEMO_JOBS:
            continue
        if job["paused"]:
            post(session, f"/api/jobs/{job['name']}/resume")
        if job["interval_overridden"]:
            post(session, f"/api/jobs/{job['name']}/reset")
    wait_until(
        lambda: all(job["status"] != "running" for job in _demo_jobs(session)),
        timeout=20,
        interval=0.1,
        message="demo jobs idle",
    )


def _demo_jobs(session):
    return [job for name, job in jobs_by_name(session).items() if name in DEMO_JOBS]


# -- colours -------------------------------------------------------------------------


def css(locator, prop):
    """A computed style property of the element."""
    return locator.evaluate("(el, prop) => getComputedStyle(el)[prop]", prop)


def rgb(color):
    """(r, g, b) of a computed CSS colour such as ``rgb(179, 38, 30)``."""
    match = re.match(r"rgba?\((\d+), (\d+), (\d+)", color)
    assert match, f"not an rgb() colour: {color}"
    return tuple(int(part) for part in match.groups())


def is_reddish(color):
    r, g, b = rgb(color)
    return r > 150 and r > 1.6 * g and r > 1.6 * b


def is_greenish(color):
    r, g, b = rgb(color)
    return g > 100 and g > 1.3 * r and g > 1.3 * b


def hue(color):
    """The hue in degrees, and the chroma (0-255), of a computed colour."""
    r, g, b = rgb(color)
    high, low = max(r, g, b), min(r, g, b)
    chroma = high - low
    if chroma == 0:
        return 0.0, 0
    if high == r:
        degrees = 60 * (((g - b) / chroma) % 6)
    elif high == g:
        degrees = 60 * ((b - r) / chroma + 2)
    else:
        degrees = 60 * ((r - g) / chroma + 4)
    return degrees, chroma


def is_yellowish(color):
    """Yellow to amber, light or dark."""
    degrees, chroma = hue(color)
    return 35 <= degrees <= 70 and chroma >= 30


def luminance(color):
    r, g, b = rgb(color)
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


# -- requests ------------------------------------------------------------------------


class RequestLog:
    """The requests a page or context sends that match ``predicate``, with when."""

    def __init__(self, target, predicate):
        self.times = []
        self.predicate = predicate
        target.on("request", self._seen)

    def _seen(self, request):
        if self.predicate(request):
            self.times.append(time.monotonic())

    def __len__(self):
        return len(self.times)

    def gaps(self):
        return [later - earlier for earlier, later in zip(self.times, self.times[1:], strict=False)]
