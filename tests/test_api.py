"""The jobs API: what it shows, and each control end to end, as JSON and as a plain
form post from a page without JavaScript."""

import re
import threading
from functools import partial

import pytest
from helpers import ADMIN_PASSWORD, admin_client, app_on, settle, take_the_lease_by_hand
from werkzeug.security import generate_password_hash

import accounts
from scheduler import JobRegistry

ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JOB_KEYS = {
    "name",
    "category",
    "description",
    "status",
    "interval",
    "interval_seconds",
    "default_interval",
    "paused",
    "run_count",
    "last_run",
    "next_run",
    "last_error",
    "last_duration_ms",
    "progress",
}
RUN_KEYS = {
    "started_at",
    "finished_at",
    "duration_ms",
    "outcome",
    "trigger",
    "user",
    "error",
    "traceback",
    "log",
}
JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch):
    """scrypt takes a tenth of a second a hash; these tests are about the API."""
    quick = partial(generate_password_hash, method="pbkdf2:sha256:1")
    monkeypatch.setattr(accounts, "generate_password_hash", quick)


class Gate:
    """A job that reports progress, then holds its run open until the test opens it."""

    def __init__(self):
        self.entered = threading.Event()
        self.opened = threading.Event()

    def job(self, ctx):
        """Wait for the test to let it finish."""
        ctx.progress(0.5, "half way")
        self.entered.set()
        if not self.opened.wait(5):
            raise TimeoutError("the test never let the run finish")
        return "done"

    def wait_until_running(self):
        assert self.entered.wait(5), "the held job never started"


@pytest.fixture
def held(tmp_path, clock):
    """An app whose one job, ``held``, runs until the test opens its gate; and an
    admin client signed in to it."""

    gate = Gate()
    registry = JobRegistry()
    registry.add(gate.job, name="held", category="demo", interval="1h")
    app = app_on(tmp_path / "held", clock, JOBS_REGISTRY=registry)
    app.extensions["accounts"].create_user("admin", ADMIN_PASSWORD, admin=True)
    engine = take_the_lease_by_hand(app.extensions["jobs"])
    client = admin_client(app)
    client.gate = gate
    yield client
    gate.opened.set()
    engine.stop(grace=2)
    app.extensions["accounts"].close()
    engine.store.close()


def post(client, path, **kwargs):
    """A fetch() from the page: the token in a header, asking for JSON."""
    headers = {"X-CSRFToken": client.csrf, **JSON, **kwargs.pop("headers", {})}
    return client.post(path, headers=headers, **kwargs)


def form_post(client, path, **fields):
    """A browser submitting one of the page's forms, without JavaScript."""
    return client.post(path, data={"csrf_token": client.csrf, **fields}, headers=BROWSER)


def job(client, name):
    return client.get(f"/api/jobs/{name}").json


def flashes(client):
    """The messages the next page load shows, as (category, text)."""
    html = client.get("/admin/jobs").get_data(as_text=True)
    return re.findall(r'<p class="flash flash-(\w+)">([^<]*)</p>', html)


def names_a_valid_interval(message):
    return re.search(r"\b\d+[dhms]\b", message) is not None


# -- what it shows ----------------------------------------------------------------------


def test_the_list_has_the_scheduler_the_version_and_every_job(admin, app):
    response = admin.get("/api/jobs")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.json
    assert body["scheduler"]["running"] is True
    assert isinstance(body["version"], int)
    names = [job["name"] for job in body["jobs"]]
    assert names == app.extensions["jobs"].registry.names()
    assert {"demo_tick", "demo_slow", "demo_fail"} <= set(names)
    categories = {job["category"] for job in body["jobs"]}
    assert {"dns", "dhcp", "system", "demo"} <= categories


def test_every_job_has_the_documented_fields(admin):
    for item in admin.get("/api/jobs").json["jobs"]:
        assert set(item) >= JOB_KEYS, item["name"]
        assert item["status"] in {"idle", "running", "paused", "error"}
        assert isinstance(item["interval"], str)
        assert isinstance(item["interval_seconds"], int)
        assert isinstance(item["paused"], bool)
        assert isinstance(item["run_count"], int)
        assert item["progress"] is None
        for key in ("last_run", "next_run"):
            assert item[key] is None or ISO_TIME.match(item[key]), (key, item[key])


def test_a_job_that_never_ran_is_first_due_one_interval_after_the_scheduler_started(admin):
    tick = job(admin, "demo_tick")

    assert tick["status"] == "idle"
    assert tick["run_count"] == 0
    assert tick["last_run"] is None
    assert tick["last_error"] is None
    assert tick["last_duration_ms"] is None
    assert tick["interval"] == tick["default_interval"] == "5s"
    assert tick["interval_seconds"] == 5
    # ManualClock starts at 2026-01-05 12:00:00 UTC.
    assert tick["next_run"] == "2026-01-05T12:00:05.000Z"
    assert job(admin, "demo_fail")["next_run"] == "2026-01-05T13:00:00.000Z"
    assert tick["runs"] == []


def test_one_job_adds_its_recent_runs_newest_first(admin, app, clock):
    engine = app.extensions["jobs"]
    post(admin, "/api/jobs/demo_tick/run")
    settle(engine)
    clock.advance(2)
    post(admin, "/api/jobs/demo_tick/run")
    settle(engine)

    tick = job(admin, "demo_tick")

    assert set(tick) >= JOB_KEYS
    assert len(tick["runs"]) == 2
    for run in tick["runs"]:
        assert set(run) >= RUN_KEYS
        assert ISO_TIME.match(run["started_at"])
        assert ISO_TIME.match(run["finished_at"])
        assert isinstance(run["duration_ms"], int | float)
        assert run["outcome"] == "ok"
        assert run["error"] is None
        assert run["traceback"] is None
    newest, oldest = tick["runs"]
    assert newest["started_at"] == "2026-01-05T12:00:02.000Z"
    assert oldest["started_at"] == "2026-01-05T12:00:00.000Z"
    assert tick["last_run"] == newest["started_at"]
    assert tick["run_count"] == 2


def test_scheduled_runs_are_recorded_as_scheduled(admin, app, clock):
    engine = app.extensions["jobs"]
    clock.advance(5)
    engine.step()
    settle(engine)

    tick = job(admin, "demo_tick")

    assert tick["run_count"] == 1
    assert tick["runs"][0]["trigger"] == "scheduled"
    assert tick["runs"][0]["user"] is None
    assert tick["next_run"] == "2026-01-05T12:00:10.000Z"


# -- run now ---------------------------------------------------------------------------------


def test_run_now_starts_the_job_and_records_who_asked(admin, app):
    response = post(admin, "/api/jobs/demo_tick/run")

    assert response.status_code == 202
    assert set(response.json) >= JOB_KEYS
    assert response.json["name"] == "demo_tick"
    assert response.json["run_count"] == 1
    assert response.json["last_run"] == "2026-01-05T12:00:00.000Z"
    settle(app.extensions["jobs"])
    tick = job(admin, "demo_tick")
    assert tick["status"] == "idle"
    run = tick["runs"][0]
    assert run["outcome"] == "ok"
    assert run["trigger"] == "manual"
    assert run["user"] == "admin"
    assert "INFO tick (manual)" in run["log"]


def test_run_now_does_not_move_the_next_scheduled_run(admin, app):
    before = job(admin, "demo_fail")["next_run"]

    assert post(admin, "/api/jobs/demo_fail/run").json["next_run"] == before
    settle(app.extensions["jobs"])
    assert job(admin, "demo_fail")["next_run"] == before


def test_run_now_while_the_job_runs_is_409(held):
    assert post(held, "/api/jobs/held/run").status_code == 202
    held.gate.wait_until_running()

    response = post(held, "/api/jobs/held/run")

    assert response.status_code == 409
    assert set(response.json) == {"error"}
    assert "already running" in response.json["error"]
    assert job(held, "held")["run_count"] == 1


def test_a_job_can_run_again_once_its_run_has_finished(held):
    post(held, "/api/jobs/held/run")
    held.gate.wait_until_running()
    held.gate.opened.set()
    settle(held.engine)

    assert post(held, "/api/jobs/held/run").status_code == 202
    settle(held.engine)
    assert [run["outcome"] for run in job(held, "held")["runs"]] == ["ok", "ok"]


def test_a_running_job_shows_its_status_and_progress(held):
    post(held, "/api/jobs/held/run")
    held.gate.wait_until_running()
    held.engine.writer.flush()

    running = job(held, "held")
    assert running["status"] == "running"
    assert running["progress"] == {"fraction": 0.5, "message": "half way"}
    assert running["runs"][0]["outcome"] == "running"
    assert running["runs"][0]["finished_at"] is None

    held.gate.opened.set()
    settle(held.engine)
    done = job(held, "held")
    assert done["status"] == "idle"
    assert done["progress"] is None
    assert done["runs"][0]["outcome"] == "ok"


def test_a_failing_run_shows_its_error(admin, app):
    post(admin, "/api/jobs/demo_fail/run")
    settle(app.extensions["jobs"])

    failed = job(admin, "demo_fail")

    assert failed["status"] == "error"
    assert failed["last_error"] == "demo failure"
    run = failed["runs"][0]
    assert run["outcome"] == "error"
    assert run["error"] == "demo failure"
    assert "RuntimeError: demo failure" in run["traceback"]
    assert "INFO about to fail on purpose" in run["log"]


def test_a_paused_job_can_still_be_run_by_hand(admin, app):
    post(admin, "/api/jobs/demo_tick/pause")

    response = post(admin, "/api/jobs/demo_tick/run")

    assert response.status_code == 202
    settle(app.extensions["jobs"])
    tick = job(admin, "demo_tick")
    assert tick["status"] == "paused"
    assert tick["run_count"] == 1


# -- pause and resume -------------------------------------------------------------------------


def test_pause_stops_the_schedule(admin, app, clock):
    response = post(admin, "/api/jobs/demo_tick/pause")

    assert response.status_code == 200
    assert response.json["name"] == "demo_tick"
    assert response.json["status"] == "paused"
    assert response.json["paused"] is True
    assert response.json["next_run"] is None
    listed = next(j for j in admin.get("/api/jobs").json["jobs"] if j["name"] == "demo_tick")
    assert listed["status"] == "paused"

    engine = app.extensions["jobs"]
    clock.advance(60)
    engine.step()
    settle(engine)
    assert job(admin, "demo_tick")["run_count"] == 0


def test_resume_puts_the_job_back_on_its_schedule(admin, app, clock):
    post(admin, "/api/jobs/demo_tick/pause")

    response = post(admin, "/api/jobs/demo_tick/resume")

    assert response.status_code == 200
    assert response.json["status"] == "idle"
    assert response.json["paused"] is False
    assert response.json["next_run"] == "2026-01-05T12:00:05.000Z"
    engine = app.extensions["jobs"]
    clock.advance(5)
    engine.step()
    settle(engine)
    assert job(admin, "demo_tick")["run_count"] == 1


def test_pausing_twice_is_harmless(admin):
    post(admin, "/api/jobs/demo_tick/pause")

    response = post(admin, "/api/jobs/demo_tick/pause")

    assert response.status_code == 200
    assert response.json["status"] == "paused"


# -- the interval ---------------------------------------------------------------------------


def test_the_interval_can_be_set_from_a_form_field(admin):
    response = post(admin, "/api/jobs/demo_tick/interval", data={"interval": "5m"})

    assert response.status_code == 200
    assert response.json["interval"] == "5m"
    assert response.json["interval_seconds"] == 300
    assert response.json["default_interval"] == "5s"
    assert job(admin, "demo_tick")["interval"] == "5m"


def test_the_interval_can_be_set_from_a_json_body(admin):
    response = post(admin, "/api/jobs/demo_tick/interval", json={"interval": "5m"})

    assert response.status_code == 200
    assert response.json["interval"] == "5m"


@pytest.mark.parametrize(
    ("typed", "shown", "seconds"),
    [
        ("1s", "1s", 1),
        ("30s", "30s", 30),
        ("90m", "1h30m", 5400),
        ("1h30m", "1h30m", 5400),
        (" 1d ", "1d", 86400),
        ("1d2h3m4s", "1d2h3m4s", 93784),
        ("365d", "365d", 365 * 86400),
    ],
)
def test_an_interval_is_shown_in_its_shortest_form(admin, typed, shown, seconds):
    response = post(admin, "/api/jobs/demo_tick/interval", json={"interval": typed})

    assert response.status_code == 200
    assert response.json["interval"] == shown
    assert response.json["interval_seconds"] == seconds


def test_a_new_interval_takes_effect_at_once(admin, app, clock):
    post(admin, "/api/jobs/demo_fail/interval", json={"interval": "10s"})
    engine = app.extensions["jobs"]

    clock.advance(10)
    engine.step()
    settle(engine)

    assert job(admin, "demo_fail")["run_count"] == 1


BAD_INTERVALS = [
    pytest.param({"data": {"interval": "abc"}}, id="abc"),
    pytest.param({"data": {"interval": ""}}, id="empty"),
    pytest.param({"data": {"interval": "30m1h"}}, id="smallest unit first"),
    pytest.param({"data": {"interval": "5M"}}, id="uppercase unit"),
    pytest.param({"data": {"interval": "5"}}, id="no unit"),
    pytest.param({"data": {"interval": "0s"}}, id="zero"),
    pytest.param({"data": {"interval": "-5m"}}, id="negative"),
    pytest.param({"data": {"interval": "366d"}}, id="over a year"),
    pytest.param({"data": {"interval": "1" * 32 + "s"}}, id="too long"),
    pytest.param({"data": {}}, id="missing field"),
    pytest.param({"json": {}}, id="json without interval"),
    pytest.param({"json": {"interval": 300}}, id="json number"),
    pytest.param({"json": {"interval": None}}, id="json null"),
    pytest.param({"json": ["5m"]}, id="json list"),
    pytest.param({"json": "5m"}, id="json string"),
    pytest.param({"data": "{not json", "content_type": "application/json"}, id="malformed json"),
]


@pytest.mark.parametrize("body", BAD_INTERVALS)
def test_a_bad_interval_is_refused_with_the_valid_formats(admin, body):
    before = job(admin, "demo_tick")

    response = post(admin, "/api/jobs/demo_tick/interval", **body)

    assert response.status_code == 400
    assert set(response.json) == {"error"}
    assert names_a_valid_interval(response.json["error"]), response.json["error"]
    assert job(admin, "demo_tick") == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"json": {}}, id="no interval"),
        pytest.param({"json": {"interval": "5M"}}, id="bad"),
    ],
)
def test_an_unknown_job_is_404_whatever_interval_is_sent(admin, body):
    response = post(admin, "/api/jobs/no_such_job/interval", **body)

    assert response.status_code == 404
    assert response.json == {"error": "No job named 'no_such_job'."}


def test_reset_puts_the_default_interval_back(admin):
    post(admin, "/api/jobs/demo_tick/interval", json={"interval": "5m"})

    response = post(admin, "/api/jobs/demo_tick/reset")

    assert response.status_code == 200
    assert response.json["interval"] == response.json["default_interval"] == "5s"
    assert response.json["interval_seconds"] == 5
    assert job(admin, "demo_tick")["interval"] == "5s"


def test_controls_and_last_runs_survive_a_restart_but_the_run_count_starts_again(admin, app, clock):
    from app import create_app

    post(admin, "/api/jobs/demo_tick/run")
    settle(app.extensions["jobs"])
    post(admin, "/api/jobs/demo_tick/interval", json={"interval": "5m"})
    post(admin, "/api/jobs/demo_fail/pause")
    app.extensions["jobs"].stop(grace=1)  # the server stops...

    restarted = create_app({**app.config, "JOBS_CLOCK": clock})  # ...and starts again
    try:
        engine = restarted.extensions["jobs"]
        engine.start()
        tick = engine.job("demo_tick")
        assert tick["interval"] == "5m"
        assert tick["last_run"] == "2026-01-05T12:00:00.000Z"
        assert tick["run_count"] == 0  # since this process started, as the spec says
        assert engine.job("demo_fail")["paused"] is True
        assert len(engine.runs("demo_tick")) == 1  # the history keeps the lifetime record
    finally:
        restarted.extensions["jobs"].stop(grace=1)
        restarted.extensions["accounts"].close()
        restarted.extensions["jobs"].store.close()


# -- what the client asked for ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Accept": "application/json"}, id="json"),
        pytest.param({"Accept": "*/*"}, id="anything"),
        pytest.param({}, id="no accept"),
        pytest.param({"Accept": "application/json, text/html;q=0.5"}, id="json first"),
    ],
)
def test_a_client_that_does_not_prefer_html_gets_json(admin, headers):
    response = admin.post(
        "/api/jobs/demo_tick/pause",
        data={"csrf_token": admin.csrf},
        headers=headers,
    )

    assert response.status_code == 200
    assert response.json["status"] == "paused"


def test_a_json_body_gets_json_whatever_it_accepts(admin):
    response = admin.post(
        "/api/jobs/demo_tick/interval",
        json={"interval": "5m"},
        headers={"X-CSRFToken": admin.csrf, **BROWSER},
    )

    assert response.status_code == 200
    assert response.json["interval"] == "5m"


def test_an_oversized_body_is_refused_as_json(admin):
    response = post(admin, "/api/jobs/demo_tick/interval", json={"interval": "5m" * 50_000})

    assert response.status_code == 413
    assert set(response.json) == {"error"}


# -- the page's forms without JavaScript ------------------------------------------------------


def test_a_form_post_goes_back_to_the_page_with_a_message(admin):
    response = form_post(admin, "/api/jobs/demo_tick/pause")

    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/jobs"
    assert flashes(admin) == [("success", "demo_tick: paused.")]
    assert job(admin, "demo_tick")["paused"] is True


def test_a_message_is_shown_once(admin):
    form_post(admin, "/api/jobs/demo_tick/pause")
    flashes(admin)

    assert flashes(admin) == []


@pytest.mark.parametrize(
    ("control", "fields", "message"),
    [
        ("run", {}, "demo_tick: started."),
        ("resume", {}, "demo_tick: resumed."),
        ("interval", {"interval": "5m"}, "demo_tick: now runs every 5m."),
        ("reset", {}, "demo_tick: back to its default interval of 5s."),
    ],
)
def test_each_form_says_what_it_did(admin, app, control, fields, message):
    response = form_post(admin, f"/api/jobs/demo_tick/{control}", **fields)
    settle(app.extensions["jobs"])

    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/jobs"
    assert flashes(admin) == [("success", message)]


def test_a_form_with_a_bad_interval_comes_back_with_the_error(admin):
    response = form_post(admin, "/api/jobs/demo_tick/interval", interval="30m1h")

    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/jobs"
    [(category, text)] = flashes(admin)
    assert category == "error"
    assert text.startswith("demo_tick: Write units largest first")
    assert job(admin, "demo_tick")["interval"] == "5s"


def test_a_form_for_an_unknown_job_comes_back_with_the_error(admin):
    response = form_post(admin, "/api/jobs/no_such_job/pause")

    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/jobs"
    assert flashes(admin) == [("error", "no_such_job: No job named &#39;no_such_job&#39;.")]


def test_a_form_for_a_running_job_comes_back_with_the_error(held):
    form_post(held, "/api/jobs/held/run")
    held.gate.wait_until_running()
    held.get("/admin/jobs")  # shows and clears the first message

    response = form_post(held, "/api/jobs/held/run")

    assert response.status_code == 303
    [(category, text)] = flashes(held)
    assert category == "error"
    assert "held is already running" in text


def test_markup_in_a_job_name_comes_back_escaped(admin):
    response = form_post(admin, "/api/jobs/%3Cimg%20src=x%20onerror=alert(1)%3E/run")

    assert response.status_code == 303
    html = admin.get("/admin/jobs").get_data(as_text=True)
    assert "<img src=x onerror=alert(1)>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


# -- a node that serves the page but runs no scheduler ----------------------------------------


@pytest.fixture
def nodes(tmp_path, clock):
    """Build servers on one instance folder: ``node(scheduler=False)`` is a web-only
    node (JOBS_SCHEDULER=0).  Each returns an admin client with ``.engine``."""

    apps = []

    def node(scheduler):
        app = app_on(tmp_path / "shared", clock, JOBS_DEMO=True, JOBS_SCHEDULER=scheduler)
        apps.append(app)
        if not app.extensions["accounts"].count_users():
            app.extensions["accounts"].create_user("admin", ADMIN_PASSWORD, admin=True)
        take_the_lease_by_hand(app.extensions["jobs"])
        return admin_client(app)

    yield node
    for app in apps:
        app.extensions["jobs"].stop(grace=2)
        app.extensions["accounts"].close()
        app.extensions["jobs"].store.close()


def test_run_now_on_a_web_only_node_with_no_scheduler_says_how_to_fix_it(nodes):
    web = nodes(scheduler=False)

    response = post(web, "/api/jobs/demo_tick/run")

    assert response.status_code == 503
    assert set(response.json) == {"error"}
    assert "JOBS_SCHEDULER=1" in response.json["error"]
    assert job(web, "demo_tick")["run_count"] == 0


def test_run_now_on_a_web_only_node_is_started_by_the_scheduler(nodes):
    scheduler = nodes(scheduler=True)
    web = nodes(scheduler=False)

    assert post(web, "/api/jobs/demo_tick/run").status_code == 202
    scheduler.engine.sync()
    settle(scheduler.engine)
    web.engine.sync()

    tick = job(web, "demo_tick")
    assert tick["run_count"] == 1
    assert tick["runs"][0]["trigger"] == "manual"
    assert tick["runs"][0]["user"] == "admin"
    assert tick["runs"][0]["outcome"] == "ok"


def test_a_pause_on_a_web_only_node_reaches_the_scheduler(nodes, clock):
    scheduler = nodes(scheduler=True)
    web = nodes(scheduler=False)

    assert post(web, "/api/jobs/demo_tick/pause").json["status"] == "paused"
    scheduler.engine.sync()
    clock.advance(60)
    scheduler.engine.step()
    settle(scheduler.engine)

    assert job(scheduler, "demo_tick")["status"] == "paused"
    assert job(scheduler, "demo_tick")["run_count"] == 0
