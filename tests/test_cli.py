"""``flask --app wsgi users ...``: create users, reset passwords, list them."""

import re
from functools import partial

import pytest
from helpers import ADMIN_PASSWORD
from werkzeug.security import generate_password_hash

import accounts


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch):
    """scrypt takes a tenth of a second a hash; these tests are about the commands."""
    quick = partial(generate_password_hash, method="pbkdf2:sha256:1")
    monkeypatch.setattr(accounts, "generate_password_hash", quick)


def users(runner, *args, input=None):
    return runner.invoke(args=["users", *args], input=input)


def listed(runner):
    result = users(runner, "list")
    assert result.exit_code == 0, result.output
    return dict(line.split("\t") for line in result.output.splitlines())


def sign_in(app, username, password):
    """Sign in through the form with a fresh client; return it and the response."""
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )
    return client, response


def test_it_creates_an_administrator(runner, app):
    result = users(runner, "create", "bob", "--admin", "--password", "longenough1")

    assert result.exit_code == 0, result.output
    assert "Created administrator bob." in result.output
    assert listed(runner)["bob"] == "admin"
    client, response = sign_in(app, "bob", "longenough1")
    assert response.status_code == 302
    assert client.get("/api/jobs").status_code == 200


def test_it_creates_a_user_who_is_not_an_administrator(runner, app):
    result = users(runner, "create", "carol", "--password", "longenough1")

    assert result.exit_code == 0, result.output
    assert "Created user carol." in result.output
    assert listed(runner)["carol"] == "user"
    client, _ = sign_in(app, "carol", "longenough1")
    assert client.get("/api/jobs").status_code == 403


def test_it_lists_every_user_by_name(runner):
    assert listed(runner) == {"admin": "admin", "viewer": "user"}


def test_it_asks_for_the_password_twice_when_none_is_given(runner, app):
    result = users(runner, "create", "dave", input="longenough1\nlongenough1\n")

    assert result.exit_code == 0, result.output
    assert "Password" in result.output
    assert "longenough1" not in result.output  # typed, never echoed
    assert app.extensions["accounts"].authenticate("dave", "longenough1") is not None


def test_it_refuses_a_password_typed_differently_the_second_time(runner, app):
    result = users(runner, "create", "erin", input="longenough1\nlongenough2\n")

    assert result.exit_code != 0
    assert "do not match" in result.output
    assert "erin" not in listed(runner)


def test_it_refuses_a_name_that_is_taken(runner):
    result = users(runner, "create", "admin", "--password", "longenough1")

    assert result.exit_code != 0
    assert "Error: A user named 'admin' already exists." in result.output


def test_names_are_taken_whatever_their_case(runner):
    result = users(runner, "create", "Admin", "--password", "longenough1")

    assert result.exit_code != 0
    assert "already exists" in result.output


def test_it_refuses_a_short_password(runner):
    result = users(runner, "create", "frank", "--password", "short")

    assert result.exit_code != 0
    assert "Error: A password needs at least 8 characters." in result.output
    assert "frank" not in listed(runner)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("has space", id="space"),
        pytest.param("_underscore", id="leading underscore"),
        pytest.param("a" * 65, id="65 characters"),
        pytest.param("semi;colon", id="semicolon"),
    ],
)
def test_it_refuses_a_badly_formed_name(runner, name):
    result = users(runner, "create", name, "--password", "longenough1")

    assert result.exit_code != 0
    assert "A username is 1-64 letters, digits" in result.output


def test_passwd_changes_the_password(runner, app):
    result = users(runner, "passwd", "viewer", "--password", "a new password")

    assert result.exit_code == 0, result.output
    assert "Changed the password of viewer" in result.output
    accounts = app.extensions["accounts"]
    assert accounts.authenticate("viewer", "a new password") is not None
    assert accounts.authenticate("viewer", "plain user password") is None


def test_passwd_asks_for_the_new_password_twice(runner, app):
    result = users(runner, "passwd", "viewer", input="a new password\na new password\n")

    assert result.exit_code == 0, result.output
    assert app.extensions["accounts"].authenticate("viewer", "a new password") is not None


def test_after_passwd_the_old_password_no_longer_signs_in(runner, app):
    users(runner, "passwd", "admin", "--password", "a new password")

    _, old = sign_in(app, "admin", ADMIN_PASSWORD)
    assert old.status_code == 401
    _, new = sign_in(app, "admin", "a new password")
    assert new.status_code == 302


def test_passwd_signs_the_user_out_everywhere(runner, app):
    client, _ = sign_in(app, "admin", ADMIN_PASSWORD)
    assert client.get("/api/jobs").status_code == 200

    users(runner, "passwd", "admin", "--password", "a new password")

    assert client.get("/api/jobs").status_code == 401


def test_passwd_of_an_unknown_user_says_so(runner):
    result = users(runner, "passwd", "nobody", "--password", "a new password")

    assert result.exit_code != 0
    assert "No user named 'nobody'." in result.output


def test_passwd_refuses_a_short_password_and_keeps_the_old_one(runner, app):
    result = users(runner, "passwd", "viewer", "--password", "short")

    assert result.exit_code != 0
    assert "at least 8 characters" in result.output
    assert app.extensions["accounts"].authenticate("viewer", "plain user password") is not None


def test_list_says_when_there_are_no_users(tmp_path):
    from app import create_app

    app = create_app({"TESTING": True, "JOBS_INSTANCE_PATH": str(tmp_path / "empty")})
    try:
        result = app.test_cli_runner().invoke(args=["users", "list"])
    finally:
        app.extensions["accounts"].close()
        app.extensions["jobs"].store.close()
    assert result.exit_code == 0
    assert result.output == "No users yet.\n"
