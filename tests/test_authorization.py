"""Who may do what, for every route in the app's URL map.

``EXPECTED`` says what kind of route each rule of ``app.url_map`` is, and the kind says
what each role (a stranger, a signed-in user who is not an admin, an admin) gets for
each method: pages send strangers to sign in, /api answers them 401 as JSON, a user
who is not an admin gets 403, an admin the route's answer, a method the route does
not have 405.  The tests walk the URL map itself, so a rule missing from
``EXPECTED`` fails them: a route added later has to say here who may use it.

Every route that takes a state-changing method refuses a post without the session's
CSRF token, or with a wrong one, and changes nothing: not the jobs, not the audit
trail, not the run history, not who is signed in."""

from dataclasses import dataclass
from functools import partial
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import ADMIN_PASSWORD, USER_PASSWORD, AuthActions, settle
from werkzeug.security import generate_password_hash

import accounts
from routes.access import STATE_CHANGING

JOB = "demo_tick"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ROLES = ("anonymous", "viewer", "admin")
PASSWORDS = {"viewer": USER_PASSWORD, "admin": ADMIN_PASSWORD}

# The kinds of route, and the methods each has.
PAGE = "an admin page"
API = "an /api read"
STREAM = "the event stream"
CONTROL = "an /api control"
HOME = "the home page"
LOGIN = "the sign-in form"
LOGOUT = "signing out"
STATIC = "a static file"
ICON = "the site icon"
READ = frozenset({"GET", "HEAD", "OPTIONS"})
KIND_METHODS = {
    PAGE: READ,
    API: READ,
    STREAM: READ,
    CONTROL: frozenset({"POST", "OPTIONS"}),
    HOME: READ,
    LOGIN: frozenset({"GET", "HEAD", "POST", "OPTIONS"}),
    LOGOUT: frozenset({"POST", "OPTIONS"}),
    STATIC: READ,
    ICON: READ,
}


@dataclass(frozen=True)
class Route:
    kind: str
    url: str  # a URL the rule matches
    ok: int = 200  # what an admin gets for a valid request
    fields: tuple = ()  # form fields of a valid post, besides the token


def control(action, ok=200, fields=()):
    return Route(CONTROL, f"/api/jobs/{JOB}/{action}", ok, fields)


EXPECTED = {
    "/": Route(HOME, "/"),
    "/login": Route(LOGIN, "/login"),
    "/logout": Route(LOGOUT, "/logout"),
    "/static/<path:filename>": Route(STATIC, "/static/jobs.css"),
    "/favicon.ico": Route(ICON, "/favicon.ico"),
    "/admin/jobs": Route(PAGE, "/admin/jobs?x=1"),
    "/admin/jobs/<name>/history": Route(PAGE, f"/admin/jobs/{JOB}/history?x=1"),
    "/api/jobs": Route(API, "/api/jobs"),
    "/api/jobs/<name>": Route(API, f"/api/jobs/{JOB}"),
    "/api/jobs/sse": Route(STREAM, "/api/jobs/sse"),
    "/api/openapi.json": Route(API, "/api/openapi.json"),
    "/api/jobs/<name>/run": control("run", ok=202),
    "/api/jobs/<name>/pause": control("pause"),
    "/api/jobs/<name>/resume": control("resume"),
    "/api/jobs/<name>/interval": control("interval", fields=(("interval", "5m"),)),
    "/api/jobs/<name>/reset": control("reset"),
}


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch):
    """scrypt takes a tenth of a second a hash; these tests sign in hundreds of times."""
    quick = partial(generate_password_hash, method="pbkdf2:sha256:1")
    monkeypatch.setattr(accounts, "generate_password_hash", quick)


def client_for(app, role):
    """A new client: a stranger, or signed in as ``viewer`` or ``admin``; with ``csrf``,
    a valid token of its own session."""
    client = app.test_client()
    actions = AuthActions(client)
    if role == "anonymous":
        client.csrf = actions.csrf_token()
    else:
        actions.login(role, PASSWORDS[role])
        # The admin's page, or the 403 page's sign-out form for the viewer.
        client.csrf = actions.csrf_token("/admin/jobs")
    return client


def who(client):
    """Who the client is signed in as now."""
    return {200: "admin", 403: "viewer", 401: "anonymous"}[client.get("/api/jobs").status_code]


def saved_state(app):
    """Everything a request could change: the jobs, the audit trail, the run history."""
    engine = app.extensions["jobs"]
    settle(engine)
    return engine.jobs(), engine.store.audit_trail(limit=1000), engine.runs(JOB, 1000)


def path_of(location):
    return urlsplit(location).path


def assert_json_error(response, status):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert "Location" not in response.headers
    if response.request.method != "HEAD":
        assert set(response.json) == {"error"}
        assert response.json["error"]


def assert_html(response, status):
    assert response.status_code == status
    assert response.mimetype == "text/html"


def allowed(response):
    return {method.strip() for method in response.headers["Allow"].split(",")}


def rules(app):
    return sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule)


# -- the table covers the URL map --------------------------------------------------------


def test_every_rule_of_the_url_map_says_who_may_use_it(app):
    served = {rule.rule for rule in app.url_map.iter_rules()}

    assert not served - set(EXPECTED), "add these routes to EXPECTED"
    assert not set(EXPECTED) - served, "these routes are gone; remove them from EXPECTED"


@pytest.mark.parametrize("rule_text", EXPECTED)
def test_each_rule_has_the_methods_of_its_kind_and_its_url_reaches_it(app, rule_text):
    route = EXPECTED[rule_text]
    [rule] = [rule for rule in app.url_map.iter_rules() if rule.rule == rule_text]
    adapter = app.url_map.bind("localhost")

    assert rule.methods == KIND_METHODS[route.kind]
    assert adapter.match(path_of(route.url), method="OPTIONS")[0] == rule.endpoint


# -- every route, every method, every role -----------------------------------------------


def send(client, route, method, **kwargs):
    """``method`` on the route's URL; a post carries the session's token and the
    route's fields.  The body is not read: a stream stays open."""
    if method in STATE_CHANGING:
        kwargs.setdefault("data", {"csrf_token": client.csrf, **dict(route.fields)})
    if route.kind == LOGIN and method == "POST":
        role = who(client)
        role = "admin" if role == "anonymous" else role
        kwargs["data"] = {**kwargs["data"], "username": role, "password": PASSWORDS[role]}
    headers = {"Accept": "application/json"} if route.url.startswith("/api/") else {}
    return client.open(route.url, method=method, headers=headers, buffered=False, **kwargs)


def assert_documented_answer(app, role, route, method):
    client = client_for(app, role)
    before = saved_state(app)
    response = send(client, route, method)
    try:
        check_answer(client, role, route, method, response)
    finally:
        response.close()
    if not (role == "admin" and route.kind == CONTROL and method == "POST"):
        assert saved_state(app) == before, "the request changed something"
    if not (route.kind in (LOGIN, LOGOUT) and method == "POST"):
        assert who(client) == role


def check_answer(client, role, route, method, response):
    if method not in KIND_METHODS[route.kind]:
        assert response.status_code == 405
        assert allowed(response) == KIND_METHODS[route.kind]
        if route.url.startswith("/api/"):
            assert_json_error(response, 405)
        return
    if method == "OPTIONS":  # Flask answers it for the rule; no view runs
        assert response.status_code == 200
        assert allowed(response) == KIND_METHODS[route.kind]
        assert response.get_data() == b""
        return
    body = (lambda: "") if method == "HEAD" else (lambda: response.get_data(as_text=True))
    kind = route.kind

    if kind == STATIC:
        assert response.status_code == 200
        assert response.mimetype == "text/css"
    elif kind == ICON:  # for anyone: the sign-in page has it too
        assert response.status_code == 302
        assert response.headers["Location"] == "/static/favicon.svg"
    elif kind == HOME:
        assert response.status_code == 302
        assert response.headers["Location"] == "/admin/jobs"
    elif kind == LOGIN and method == "POST":
        assert response.status_code == 302
        assert response.headers["Location"] == "/admin/jobs"
        assert who(client) == ("admin" if role == "anonymous" else role)
    elif kind == LOGIN:
        if role == "anonymous":
            assert_html(response, 200)
            assert method == "HEAD" or 'name="csrf_token"' in body()
        else:
            assert response.status_code == 302
            assert response.headers["Location"] == "/admin/jobs"
    elif kind == LOGOUT:
        assert response.status_code == 302
        assert path_of(response.headers["Location"]) == "/login"
        assert who(client) == "anonymous"
    elif role == "anonymous" and kind == PAGE:
        assert response.status_code == 302
        location = urlsplit(response.headers["Location"])
        assert location.path == "/login"
        assert parse_qs(location.query)["next"] == [route.url]
    elif role == "anonymous":
        assert_json_error(response, 401)
    elif role == "viewer" and kind == PAGE:
        assert_html(response, 403)
        assert method == "HEAD" or "Only administrators may open this page." in body()
    elif role == "viewer":
        assert_json_error(response, 403)
    elif kind == PAGE:
        assert_html(response, 200)
    elif kind == STREAM:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        if method == "GET":
            chunks = iter(response.response)
            assert next(chunks) == b"retry: 3000\n\n"
            assert next(chunks).startswith(b"event: snapshot\n")
    elif kind == API:
        assert response.status_code == 200
        assert response.mimetype == "application/json"
        assert method == "HEAD" or response.json
    else:
        assert kind == CONTROL
        assert response.status_code == route.ok
        assert response.json["name"] == JOB


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_the_documented_answer_for_every_route_and_method(app, role, subtests):
    for rule in rules(app):
        route = EXPECTED.get(rule.rule)
        with subtests.test(rule=rule.rule):
            assert route is not None, f"{rule.rule} is not in EXPECTED: say who may use it"
        if route is None:
            continue
        for method in METHODS:
            with subtests.test(rule=rule.rule, method=method):
                assert_documented_answer(app, role, route, method)


# -- every state-changing route needs the session's token --------------------------------


def without_token(client, other):
    return {}


def forged_token(client, other):
    return {"csrf_token": "forged"}


def another_sessions_token(client, other):
    return {"csrf_token": other}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("token", [without_token, forged_token, another_sessions_token])
def test_a_post_without_the_sessions_token_is_refused_and_changes_nothing(
    app, role, token, subtests
):
    other = client_for(app, "anonymous").csrf
    for rule in rules(app):
        route = EXPECTED.get(rule.rule)
        for method in sorted(rule.methods & set(STATE_CHANGING)):
            with subtests.test(rule=rule.rule, method=method):
                assert route is not None, f"{rule.rule} is not in EXPECTED"
                client = client_for(app, role)
                before = saved_state(app)
                data = {**dict(route.fields), **token(client, other)}
                if route.kind == LOGIN:  # right credentials: only the token is wrong
                    name = "admin" if role == "anonymous" else role
                    data.update(username=name, password=PASSWORDS[name])

                response = send(client, route, method, data=data)

                assert_refused(response, role, route)
                assert saved_state(app) == before
                assert who(client) == role


def assert_refused(response, role, route):
    """Authentication comes first: a stranger or a user who is not an admin gets
    401 or 403 from /api, token or not; the token check answers 400."""
    if route.kind == CONTROL and role != "admin":
        assert_json_error(response, 401 if role == "anonymous" else 403)
    elif route.kind == LOGOUT and role == "anonymous":
        assert response.status_code == 302
        assert path_of(response.headers["Location"]) == "/login"
    elif route.url.startswith("/api/"):
        assert_json_error(response, 400)
        assert "security token" in response.json["error"]
    else:
        assert_html(response, 400)
        assert "security token" in response.get_data(as_text=True)


CONTROL_URLS = [route.url for route in EXPECTED.values() if route.kind == CONTROL]


@pytest.mark.parametrize("path", CONTROL_URLS)
def test_a_control_with_a_forged_token_in_the_header_and_a_json_body_changes_nothing(app, path):
    client = client_for(app, "admin")
    before = saved_state(app)

    response = client.post(path, json={"interval": "5m"}, headers={"X-CSRFToken": "forged"})

    assert_json_error(response, 400)
    assert saved_state(app) == before


NAMELESS_FIELD = (
    b"--b\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n"
    b'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n%s\r\n--b--\r\n'
)


@pytest.mark.parametrize("role", ["anonymous", "admin"])
def test_a_form_with_a_field_without_a_name_is_refused_not_a_server_error(app, role, subtests):
    """A multipart part without a name used to reach Flask-WTF as a None key: 500."""
    for rule in rules(app):
        route = EXPECTED.get(rule.rule)
        if "POST" not in rule.methods or (route and role == "anonymous" and route.kind != LOGIN):
            continue
        with subtests.test(rule=rule.rule):
            assert route is not None, f"{rule.rule} is not in EXPECTED"
            client = client_for(app, role)
            before = saved_state(app)

            response = client.post(
                route.url,
                data=NAMELESS_FIELD % client.csrf.encode(),
                content_type="multipart/form-data; boundary=b",
            )

            assert response.status_code == 400
            assert "field without" in response.get_data(as_text=True)
            assert saved_state(app) == before
            assert who(client) == role
