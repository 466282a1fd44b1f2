"""The Jobs page at /admin/jobs: what an administrator sees on it, with or without
JavaScript, and the headers that keep it safe."""

import re
import threading
import time
from functools import partial
from html.parser import HTMLParser

import pytest
from helpers import ADMIN_PASSWORD, admin_client, app_on, settle, take_the_lease_by_hand
from werkzeug.security import generate_password_hash

import accounts
from scheduler import JobRegistry

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch):
    """scrypt takes a tenth of a second a hash; these tests are about the page."""
    quick = partial(generate_password_hash, method="pbkdf2:sha256:1")
    monkeypatch.setattr(accounts, "generate_password_hash", quick)


# -- reading the page as a browser would --------------------------------------------------


class Element:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children = []

    @property
    def text(self):
        """The text a reader sees, spaces collapsed."""
        parts = []

        def walk(node):
            for child in node.children:
                parts.append(child) if isinstance(child, str) else walk(child)

        walk(self)
        return " ".join("".join(parts).split())

    @property
    def classes(self):
        return self.attrs.get("class", "").split()

    def all(self, tag=None, **attrs):
        """Every element below this one with ``tag`` and the given attribute values
        (``class_`` matches one class; ``True`` matches any value)."""
        found = []

        def matches(node):
            if tag and node.tag != tag:
                return False
            for name, wanted in attrs.items():
                if name == "class_":
                    if wanted not in node.classes:
                        return False
                elif wanted is True:
                    if name.replace("_", "-") not in node.attrs:
                        return False
                elif node.attrs.get(name.replace("_", "-")) != wanted:
                    return False
            return True

        def walk(node):
            for child in node.children:
                if isinstance(child, Element):
                    if matches(child):
                        found.append(child)
                    walk(child)

        walk(self)
        return found

    def one(self, tag=None, **attrs):
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Element("#document", {})

    def handle_starttag(self, tag, attrs):
        element = Element(tag, attrs, self.current)
        self.current.children.append(element)
        if tag not in VOID:
            self.current = element

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(response):
    assert response.status_code == 200, response.status_code
    parser = PageParser()
    parser.feed(response.get_data(as_text=True))
    return parser.root


def card(page, name):
    return page.one("article", id=f"job-{name}")


def field(element, name):
    return element.one(data_field=name)


# -- apps with jobs of the tests' own ------------------------------------------------------


class Gate:
    """Holds a run open until the test opens it."""

    def __init__(self):
        self.entered = threading.Event()
        self.opened = threading.Event()

    def job(self, ctx):
        """Wait for the test to let it finish."""
        self.entered.set()
        if not self.opened.wait(5):
            raise TimeoutError("the test never let the run finish")


def fail_with_markup(ctx):
    """Fail with an error message that is markup."""
    raise ValueError("<script>alert(1)</script>")


@pytest.fixture
def make_app(tmp_path, clock):
    """Build an app (demo jobs unless given a registry) and sign an admin in to it;
    returns the admin client, with ``.app`` and ``.engine``."""

    made = []

    def make(registry=None, *, instance=None, **config):
        app = app_on(
            instance or tmp_path / f"instance-{len(made)}",
            clock,
            JOBS_DEMO=True,
            JOBS_REGISTRY=registry,
            **config,
        )
        made.append(app)
        if not app.extensions["accounts"].count_users():
            app.extensions["accounts"].create_user("admin", ADMIN_PASSWORD, admin=True)
        take_the_lease_by_hand(app.extensions["jobs"])
        return admin_client(app)

    yield make
    for app in made:
        app.extensions["jobs"].stop(grace=2)
        app.extensions["accounts"].close()
        app.extensions["jobs"].store.close()


@pytest.fixture
def held(make_app):
    gate = Gate()
    registry = JobRegistry()
    registry.add(gate.job, name="held", category="demo", interval="1h")
    client = make_app(registry)
    client.gate = gate
    yield client
    gate.opened.set()


def post(client, path, **kwargs):
    headers = {"X-CSRFToken": client.csrf, "Accept": "application/json"}
    return client.post(path, headers=headers, **kwargs)


# -- the cards ---------------------------------------------------------------------------


def test_the_page_shows_a_card_for_every_job(admin, app):
    page = parse(admin.get("/admin/jobs"))

    cards = page.all("article", class_="card")
    assert [c.attrs["data-job"] for c in cards] == app.extensions["jobs"].registry.names()


def test_each_card_shows_every_field_of_the_spec(admin):
    page = parse(admin.get("/admin/jobs"))

    for job in admin.get("/api/jobs").json["jobs"]:
        element = card(page, job["name"])
        assert element.one("h2", class_="job-name").text == job["name"]
        assert element.one("span", class_="category").text == job["category"]
        assert field(element, "status").text == job["status"] == "idle"
        assert element.one("p", class_="description").text == job["description"]
        assert field(element, "interval").text == job["interval"]
        assert field(element, "run_count").text == "0"
        assert field(element, "last_run").text == "never"
        assert field(element, "next_run").attrs["datetime"] == job["next_run"]
        last_error = field(element, "last_error")
        assert "hidden" in last_error.attrs
        assert "Last error" in last_error.text


def test_the_fields_have_their_labels(admin):
    page = parse(admin.get("/admin/jobs"))

    labels = [dt.text for dt in card(page, "demo_tick").all("dt")]
    assert labels == ["Interval", "Run count", "Last run", "Next run"]


def test_a_card_shows_the_last_run_and_the_run_count(admin, app):
    admin.post("/api/jobs/demo_tick/run", headers={"X-CSRFToken": admin.csrf})
    settle(app.extensions["jobs"])

    element = card(parse(admin.get("/admin/jobs")), "demo_tick")

    assert field(element, "run_count").text == "1"
    last_run = field(element, "last_run")
    assert last_run.tag == "time"
    assert last_run.attrs["datetime"] == "2026-01-05T12:00:00.000Z"
    assert re.fullmatch(r"(\d+ (s|min|h|d) ago|now|in \d+ (s|min|h|d))", last_run.text)


def test_a_failed_job_shows_its_error_in_red(admin, app):
    admin.post("/api/jobs/demo_fail/run", headers={"X-CSRFToken": admin.csrf})
    settle(app.extensions["jobs"])

    element = card(parse(admin.get("/admin/jobs")), "demo_fail")

    assert field(element, "status").text == "error"
    assert "badge-error" in field(element, "status").classes
    last_error = field(element, "last_error")
    assert "hidden" not in last_error.attrs
    assert "last-error" in last_error.classes
    assert last_error.one("span", class_="text").text == "demo failure"
    with admin.get("/static/jobs.css") as response:
        stylesheet = response.get_data(as_text=True)
    assert re.search(r"\.last-error[^{]*\{[^}]*color", stylesheet)


def test_a_paused_job_says_paused_for_its_next_run(admin):
    post(admin, "/api/jobs/demo_tick/pause")

    element = card(parse(admin.get("/admin/jobs")), "demo_tick")

    assert field(element, "status").text == "paused"
    assert field(element, "next_run").text == "paused"
    assert "datetime" not in field(element, "next_run").attrs


def test_the_pause_button_becomes_resume_when_paused(admin):
    active = card(parse(admin.get("/admin/jobs")), "demo_tick").one(data_control="toggle")
    assert active.attrs["action"] == "/api/jobs/demo_tick/pause"
    assert active.one("button").attrs["aria-label"] == "Pause demo_tick"
    assert active.one("button").attrs["data-paused"] == "false"

    post(admin, "/api/jobs/demo_tick/pause")

    paused = card(parse(admin.get("/admin/jobs")), "demo_tick").one(data_control="toggle")
    assert paused.attrs["action"] == "/api/jobs/demo_tick/resume"
    assert paused.one("button").attrs["aria-label"] == "Resume demo_tick"
    assert paused.one("button").attrs["data-paused"] == "true"


def test_the_pause_icon_has_two_bars_and_the_play_icon_a_triangle(admin):
    toggle = card(parse(admin.get("/admin/jobs")), "demo_tick").one(data_control="toggle")

    assert len(toggle.one("svg", class_="icon-pause").all("rect")) == 2
    assert len(toggle.one("svg", class_="icon-play").all("path")) == 1


def test_run_now_is_disabled_while_the_job_runs(held):
    page = parse(held.get("/admin/jobs"))
    assert "disabled" not in card(page, "held").one("button", class_="run").attrs

    post(held, "/api/jobs/held/run")
    assert held.gate.entered.wait(5), "the held job never started"

    element = card(parse(held.get("/admin/jobs")), "held")
    assert field(element, "status").text == "running"
    assert "disabled" in element.one("button", class_="run").attrs


def test_a_changed_interval_shows_the_default_beside_it(admin):
    post(admin, "/api/jobs/demo_tick/interval", json={"interval": "5m"})

    element = card(parse(admin.get("/admin/jobs")), "demo_tick")

    assert field(element, "interval").text == "5m (default 5s)"
    assert element.one("input", name="interval").attrs["value"] == "5m"


def test_the_interval_editor_is_a_form_that_names_the_formats(admin):
    editor = card(parse(admin.get("/admin/jobs")), "demo_tick").one(data_control="interval")

    assert editor.attrs["method"] == "post"
    assert editor.attrs["action"] == "/api/jobs/demo_tick/interval"
    box = editor.one("input", name="interval")
    assert box.attrs["value"] == "5s"
    assert box.attrs["maxlength"] == "32"
    assert editor.one("p", class_="help").text == "30s, 5m, 1h, 1d or 1h30m"
    assert [b.text for b in editor.all("button")] == ["Save", "Cancel"]


def test_reset_to_default_is_offered_only_while_the_interval_is_changed(admin):
    reset = card(parse(admin.get("/admin/jobs")), "demo_tick").one(data_control="reset")
    assert "hidden" in reset.attrs

    post(admin, "/api/jobs/demo_tick/interval", json={"interval": "5m"})

    element = card(parse(admin.get("/admin/jobs")), "demo_tick")
    reset = element.one(data_control="reset")
    assert "hidden" not in reset.attrs
    assert reset.one("button").text == "Reset to default (5s)"
    assert reset.attrs["method"] == "post"
    assert reset.attrs["action"] == "/api/jobs/demo_tick/reset"
    assert element.one("details", class_="interval-editor").all(data_control="reset") == [reset]


def test_the_reset_form_puts_the_default_interval_back(admin):
    post(admin, "/api/jobs/demo_tick/interval", json={"interval": "5m"})
    form = card(parse(admin.get("/admin/jobs")), "demo_tick").one(data_control="reset")
    token = form.one("input", name="csrf_token").attrs["value"]

    response = admin.post(
        form.attrs["action"], data={"csrf_token": token}, headers={"Accept": "text/html"}
    )

    assert response.status_code == 303
    page = parse(admin.get("/admin/jobs"))
    flash = page.one("p", class_="flash")
    assert flash.text == "demo_tick: back to its default interval of 5s."
    assert "flash-success" in flash.classes
    element = card(page, "demo_tick")
    assert field(element, "interval").text == "5s"
    assert "hidden" in element.one(data_control="reset").attrs


def test_every_form_posts_with_a_token(admin):
    page = parse(admin.get("/admin/jobs"))

    forms = page.all("form")
    assert len(forms) == 4 * len(page.all("article", class_="card")) + 1  # and sign out
    for form in forms:
        assert form.attrs["method"] == "post"
        token = form.one("input", name="csrf_token")
        assert token.attrs["type"] == "hidden"
        assert token.attrs["value"]
    main = page.one("main", id="jobs-page")
    assert main.attrs["data-csrf-token"]


def test_the_page_forms_work_with_the_token_they_carry(admin):
    page = parse(admin.get("/admin/jobs"))
    form = card(page, "demo_tick").one(data_control="toggle")
    token = form.one("input", name="csrf_token").attrs["value"]

    response = admin.post(
        form.attrs["action"], data={"csrf_token": token}, headers={"Accept": "text/html"}
    )

    assert response.status_code == 303
    flash = parse(admin.get("/admin/jobs")).one("p", class_="flash")
    assert flash.text == "demo_tick: paused."
    assert "flash-success" in flash.classes


def test_a_page_left_open_for_hours_can_still_post(admin, monkeypatch):
    """The token is tied to the session, not to the clock (the session itself lasts
    JOBS_SESSION_HOURS)."""
    import itsdangerous.timed

    token = parse(admin.get("/admin/jobs")).one("main", id="jobs-page").attrs["data-csrf-token"]
    later = int(time.time()) + 11 * 3600  # what signed tokens and cookies see as now
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda _: later)

    response = admin.post("/api/jobs/demo_tick/pause", headers={"X-CSRFToken": token})

    assert response.status_code == 200, response.json


def test_an_error_from_a_form_is_shown_as_an_error(admin):
    admin.post(
        "/api/jobs/demo_tick/interval",
        data={"csrf_token": admin.csrf, "interval": "5M"},
        headers={"Accept": "text/html"},
    )

    flash = parse(admin.get("/admin/jobs")).one("p", class_="flash")
    assert "flash-error" in flash.classes
    assert flash.text == "demo_tick: Units are lowercase d, h, m, s: use '5m' instead of '5M'."


# -- markup from jobs is shown as text -------------------------------------------------------


def test_markup_in_job_errors_and_descriptions_is_escaped(make_app):
    registry = JobRegistry()
    registry.add(
        fail_with_markup,
        name="xss",
        category="demo",
        interval="1h",
        description='<img src=x onerror="alert(2)"> & friends',
    )
    client = make_app(registry)
    post(client, "/api/jobs/xss/run")
    settle(client.engine)

    html = client.get("/admin/jobs").get_data(as_text=True)

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt; &amp; friends" in html
    element = card(parse(client.get("/admin/jobs")), "xss")
    assert field(element, "last_error").one("span", class_="text").text == (
        "<script>alert(1)</script>"
    )


# -- the status bar ------------------------------------------------------------------------


def test_the_status_bar_says_the_scheduler_is_running(admin):
    state = parse(admin.get("/admin/jobs")).one(id="scheduler-state")

    assert state.text == "Scheduler running"
    assert "scheduler-running" in state.classes


def test_a_web_only_node_says_the_scheduler_is_stopped(make_app):
    client = make_app(JOBS_SCHEDULER=False)

    state = parse(client.get("/admin/jobs")).one(id="scheduler-state")

    assert state.text == "Scheduler stopped"
    assert "scheduler-stopped" in state.classes
    assert client.get("/api/jobs").json["scheduler"]["running"] is False


def test_a_web_only_node_says_running_once_a_scheduler_holds_the_lease(make_app):
    web = make_app(JOBS_SCHEDULER=False)
    assert parse(web.get("/admin/jobs")).one(id="scheduler-state").text == "Scheduler stopped"

    make_app(instance=web.app.instance_path)  # a scheduler starts on the same database
    web.engine.keep_lease()  # the web node's next look at the lease

    assert parse(web.get("/admin/jobs")).one(id="scheduler-state").text == "Scheduler running"


def test_the_status_bar_follows_the_scheduler_heartbeat(admin, app, clock):
    engine = app.extensions["jobs"]

    clock.advance(401 * 86400)  # past the lease: the scheduler has stopped renewing it
    engine.step()

    assert parse(admin.get("/admin/jobs")).one(id="scheduler-state").text == "Scheduler stopped"
    assert admin.get("/api/jobs").json["scheduler"]["running"] is False

    engine.keep_lease()  # it is back

    assert parse(admin.get("/admin/jobs")).one(id="scheduler-state").text == "Scheduler running"
    assert admin.get("/api/jobs").json["scheduler"]["running"] is True


def test_the_page_has_the_live_updates_toggle_and_the_paused_indicator(admin):
    page = parse(admin.get("/admin/jobs"))

    toggle = page.one("button", id="live-toggle")
    assert toggle.text == "Pause live updates"
    assert toggle.attrs["aria-pressed"] == "false"
    paused = page.one(id="live-paused")
    assert paused.text == "Paused"
    assert "hidden" in paused.attrs  # shown by the script while updates are paused


def test_the_page_tells_its_script_where_the_api_and_stream_are(admin):
    main = parse(admin.get("/admin/jobs")).one("main", id="jobs-page")

    assert main.attrs["data-api-url"] == "/api/jobs"
    assert main.attrs["data-stream-url"] == "/api/jobs/sse"
    assert main.attrs["data-version"].isdigit()


def test_the_script_and_stylesheet_are_served(admin):
    page = parse(admin.get("/admin/jobs"))
    script = page.one("script")
    stylesheet = page.one("link", rel="stylesheet")

    for url in (script.attrs["src"], stylesheet.attrs["href"]):
        with admin.get(url) as response:
            assert response.status_code == 200


# -- the icon ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/admin/jobs", "/admin/jobs/demo_tick/history"])
def test_every_page_links_its_icon(app, admin, path):
    stranger = app.test_client()
    page = parse((stranger if path == "/login" else admin).get(path))

    icon = page.one("link", rel="icon")
    assert icon.attrs["href"] == "/static/favicon.svg"
    assert icon.attrs["type"] == "image/svg+xml"


def test_the_icon_is_an_svg_image_the_policy_allows(client):
    with client.get("/static/favicon.svg") as response:
        assert response.status_code == 200
        assert response.mimetype == "image/svg+xml"
        assert response.get_data(as_text=True).startswith("<svg ")
    policy = client.get("/login").headers["Content-Security-Policy"]
    assert "img-src 'self'" in policy


def test_favicon_ico_leads_to_the_icon(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 302
    assert response.headers["Location"] == "/static/favicon.svg"
    with client.get("/favicon.ico", follow_redirects=True) as response:
        assert response.status_code == 200
        assert response.mimetype == "image/svg+xml"


# -- the history page -----------------------------------------------------------------------


def test_the_history_page_lists_recent_runs(admin, app):
    admin.post("/api/jobs/demo_fail/run", headers={"X-CSRFToken": admin.csrf})
    settle(app.extensions["jobs"])

    page = parse(admin.get("/admin/jobs/demo_fail/history"))

    rows = page.one("table", class_="runs").one("tbody").all("tr")
    assert len(rows) == 1
    assert rows[0].one("span", class_="outcome").text == "error"
    assert "manual by admin" in rows[0].text
    assert rows[0].one("p", class_="run-error").text == "demo failure"


def test_the_history_of_a_job_that_never_ran_says_so(admin):
    assert "No runs yet." in parse(admin.get("/admin/jobs/demo_tick/history")).text


# -- safety headers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/admin/jobs", "/admin/jobs/demo_tick/history", "/api/jobs", "/api/jobs/demo_tick"]
)
def test_pages_and_api_send_the_safety_headers(admin, path):
    response = admin.get(path)

    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in {"same-origin", "strict-origin", "no-referrer"}


@pytest.mark.parametrize("path", ["/login", "/admin/jobs", "/api/jobs"])
def test_errors_and_the_login_page_send_the_safety_headers_too(client, path):
    response = client.get(path)

    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_needs_no_inline_script_or_style(admin):
    """The policy forbids inline code, so the page must not depend on any."""
    page = parse(admin.get("/admin/jobs"))

    for script in page.all("script"):
        assert script.attrs.get("src"), "an inline <script> would be blocked"
    assert page.all("style") == []
    assert page.all(style=True) == []

    def walk(node):
        for child in node.children:
            if isinstance(child, Element):
                handlers = [name for name in child.attrs if name.startswith("on")]
                assert not handlers, f"<{child.tag}> has inline handlers {handlers}"
                walk(child)

    walk(page)
