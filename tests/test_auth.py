"""Signing in and out, and who may use which route."""

import re
import sqlite3
import time
from functools import partial
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import ADMIN_PASSWORD, AuthActions
from werkzeug.security import generate_password_hash

import accounts

COOKIE = "codexdns_session"
TOKEN = re.compile(r'name="csrf_token" value="[^"]+"')


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch):
    """scrypt takes a tenth of a second a hash; these tests are about the web layer
    (``test_passwords_are_stored_as_scrypt_hashes`` checks the real one)."""
    quick = partial(generate_password_hash, method="pbkdf2:sha256:1")
    monkeypatch.setattr(accounts, "generate_password_hash", quick)


@pytest.fixture
def anonymous(app):
    """A client that has never signed in, holding a valid CSRF token of its own."""
    client = app.test_client()
    client.csrf = AuthActions(client).csrf_token()
    return client


def signed_in(client):
    return client.get("/api/jobs").status_code == 200


def session_cookie(client):
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


# -- the sign-in form --------------------------------------------------------------------


def test_the_login_page_shows_the_sign_in_form(client):
    response = client.get("/login")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<form method="post" action="/login">' in html
    assert 'name="username"' in html
    assert 'name="password" type="password"' in html
    assert TOKEN.search(html)


def test_a_head_request_for_the_login_page_is_answered_like_get_and_tries_no_password(
    app, client, monkeypatch
):
    """It used to be taken for a failed sign-in: 401, after a password hash that the
    limits on failed sign-ins (which count posts) did not count."""
    tried = []
    monkeypatch.setattr(app.extensions["accounts"], "authenticate", lambda *a: tried.append(a))

    response = client.head("/login")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert tried == []


def test_signing_in_goes_to_the_jobs_page(auth, client):
    response = auth.login()

    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/jobs"
    assert signed_in(client)


def test_signing_in_returns_to_a_same_site_next_with_its_query(auth):
    response = auth.login(next="/admin/jobs/demo_tick/history?limit=5&sort=new")

    assert response.headers["Location"] == "/admin/jobs/demo_tick/history?limit=5&sort=new"


def test_a_page_asked_for_before_signing_in_is_shown_after_it(client, auth):
    asked = client.get("/admin/jobs/demo_tick/history?limit=5")
    next_value = parse_qs(urlsplit(asked.headers["Location"]).query)["next"][0]
    form = client.get(asked.headers["Location"]).get_data(as_text=True)
    assert f'name="next" value="{next_value}"' in form

    response = auth.login(next=next_value)

    assert response.headers["Location"] == "/admin/jobs/demo_tick/history?limit=5"


@pytest.mark.parametrize(
    "next_value",
    [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "///evil.example/path",
        "\t//evil.example",
        "/admin/jobs\r\nSet-Cookie: x=1",
        "evil.example",
    ],
)
def test_signing_in_never_leaves_the_site(auth, next_value):
    response = auth.login(next=next_value)

    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/jobs"


def test_the_sign_in_form_does_not_carry_an_offsite_next(client):
    html = client.get("/login?next=//evil.example").get_data(as_text=True)

    assert "evil.example" not in html
    assert 'name="next" value="/admin/jobs"' in html


def test_someone_signed_in_who_opens_the_login_page_is_sent_on(admin):
    assert admin.get("/login").headers["Location"] == "/admin/jobs"
    assert admin.get("/login?next=//evil.example").headers["Location"] == "/admin/jobs"
    assert admin.get("/login?next=/admin/jobs?x=1").headers["Location"] == "/admin/jobs?x=1"


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(app, auth, client):
    wrong_password = auth.login("admin", "not the password")
    unknown_user = auth.login("nobody", "not the password")

    assert wrong_password.status_code == unknown_user.status_code == 401

    def normalized(response, username):
        html = TOKEN.sub("TOKEN", response.get_data(as_text=True))
        return html.replace(f'value="{username}"', 'value="USERNAME"')

    assert normalized(wrong_password, "admin") == normalized(unknown_user, "nobody")
    assert "Wrong username or password." in wrong_password.get_data(as_text=True)
    assert not signed_in(client)


def test_a_failed_sign_in_keeps_the_username_in_the_form(auth):
    html = auth.login("admin", "not the password").get_data(as_text=True)

    assert 'name="username" autocomplete="username" required autofocus value="admin"' in html


def test_a_failed_sign_in_escapes_the_username_it_shows(auth):
    html = auth.login('"><script>alert(1)</script>', "not the password").get_data(as_text=True)

    assert "<script>alert(1)</script>" not in html
    assert "&#34;&gt;&lt;script&gt;" in html


def test_signing_in_without_a_token_is_refused(app, client):
    client.get("/login")
    response = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})

    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert not signed_in(client)


def test_signing_in_with_another_browsers_token_is_refused(app, client):
    other = AuthActions(app.test_client()).csrf_token()
    client.get("/login")
    response = client.post(
        "/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": other}
    )

    assert response.status_code == 400
    assert not signed_in(client)


# -- the session cookie -------------------------------------------------------------------


def test_the_session_cookie_is_http_only_and_same_site_lax(auth):
    response = auth.login()

    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith(COOKIE))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http on 127.0.0.1 must still work


def test_the_session_cookie_is_secure_over_https(app):
    client = app.test_client()
    base = "https://localhost"
    page = client.get("/login", base_url=base).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login",
        base_url=base,
        data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token},
        headers={"Referer": f"{base}/login"},
    )

    assert response.status_code == 302
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith(COOKIE))
    assert "Secure" in cookie
    assert "HttpOnly" in cookie


def test_the_session_cookie_changes_when_signing_in(client, auth):
    client.get("/login")
    before = session_cookie(client)

    auth.login()

    assert before is not None
    assert session_cookie(client) != before


def test_a_token_from_before_signing_in_is_not_accepted_after_it(client, auth):
    """Nothing from the anonymous session carries over (as Django rotates its token)."""
    before = auth.csrf_token()
    auth.login()

    response = client.post("/api/jobs/demo_tick/pause", headers={"X-CSRFToken": before})

    assert response.status_code == 400
    assert client.get("/api/jobs/demo_tick").json["paused"] is False


def test_each_sign_in_gets_a_new_session_id(app, client, auth):
    auth.login()
    with client.session_transaction() as session:
        first = session["_user_id"]
    token = auth.csrf_token("/admin/jobs")
    client.post(
        "/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    with client.session_transaction() as session:
        second = session["_user_id"]

    assert first != second
    assert len(second) >= 32


def test_a_cookie_saved_before_signing_in_does_not_sign_anyone_in(app, client, auth):
    client.get("/login")
    before = session_cookie(client)
    auth.login()

    stranger = app.test_client()
    stranger.set_cookie(COOKIE, before)
    assert stranger.get("/api/jobs").status_code == 401


def test_a_session_ends_after_the_session_lifetime(app, admin, monkeypatch):
    later = time.time() + app.config["SESSION_HOURS"] * 3600 + 1
    monkeypatch.setattr(accounts, "time", SimpleNamespace(time=lambda: later))

    assert admin.get("/api/jobs").status_code == 401
    assert admin.get("/admin/jobs").status_code == 302


def test_passwords_are_stored_as_scrypt_hashes(app, monkeypatch):
    monkeypatch.undo()  # the real KDF, as the server uses it
    app.extensions["accounts"].create_user("hashed", "a long enough password")

    with sqlite3.connect(f"{app.instance_path}/jobs.db") as conn:
        (stored,) = conn.execute(
            "SELECT password_hash FROM users WHERE username = 'hashed'"
        ).fetchone()
    conn.close()
    assert stored.startswith("scrypt:")
    assert "a long enough password" not in stored


# -- signing out -------------------------------------------------------------------------


def test_signing_out_ends_the_session(admin):
    response = admin.post("/logout", data={"csrf_token": admin.csrf})

    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert admin.get("/api/jobs").status_code == 401
    assert admin.get("/admin/jobs").status_code == 302


def test_a_copy_of_the_cookie_stops_working_after_signing_out(app, admin):
    copy = app.test_client()
    copy.set_cookie(COOKIE, session_cookie(admin))
    assert copy.get("/api/jobs").status_code == 200

    admin.post("/logout", data={"csrf_token": admin.csrf})

    response = copy.get("/api/jobs")
    assert response.status_code == 401
    assert response.json == {"error": "Sign in first."}


def test_signing_out_needs_the_token(admin):
    response = admin.post("/logout")

    assert response.status_code == 400
    assert signed_in(admin)


def test_signing_out_is_a_post(admin):
    assert admin.get("/logout").status_code == 405
    assert signed_in(admin)


def test_signing_out_when_not_signed_in_shows_the_sign_in_form(anonymous):
    response = anonymous.post("/logout", data={"csrf_token": anonymous.csrf})

    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"


def test_the_home_page_is_the_jobs_page(client, admin):
    assert client.get("/").headers["Location"] == "/admin/jobs"
    assert admin.get("/").headers["Location"] == "/admin/jobs"


def test_the_jobs_page_has_a_sign_out_button(admin):
    html = admin.get("/admin/jobs").get_data(as_text=True)

    assert '<form class="signout" method="post" action="/logout">' in html
    assert '<span class="who">admin</span>' in html


# -- unknown jobs and paths ---------------------------------------------------------------
# Who may use each route, with which methods and tokens, is in test_authorization.py.


def assert_json_error(response, status):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert "Location" not in response.headers
    assert set(response.json) == {"error"}
    assert response.json["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/jobs/no_such_job"),
        ("post", "/api/jobs/no_such_job/run"),
        ("post", "/api/jobs/no_such_job/pause"),
        ("post", "/api/jobs/no_such_job/resume"),
        ("post", "/api/jobs/no_such_job/interval"),
        ("post", "/api/jobs/no_such_job/reset"),
    ],
)
def test_an_unknown_job_is_404_as_json(admin, method, path):
    response = getattr(admin, method)(
        path, json={"interval": "5m"}, headers={"X-CSRFToken": admin.csrf}
    )

    assert_json_error(response, 404)
    assert response.json["error"] == "No job named 'no_such_job'."


def test_an_unknown_api_path_is_404_as_json(admin):
    assert_json_error(admin.get("/api/nothing/here"), 404)


def test_the_history_of_an_unknown_job_is_a_404_page(admin):
    response = admin.get("/admin/jobs/no_such_job/history")

    assert response.status_code == 404
    assert response.mimetype == "text/html"
