"""Failed sign-ins are rate limited per username and per client address."""

import pytest
from helpers import ADMIN_PASSWORD


@pytest.fixture
def app(app):
    app.config.update(LOGIN_FAILURES_PER_USER=3, LOGIN_FAILURES_PER_ADDRESS=5)
    return app


def attempt(client, auth, username, password, address="192.0.2.1"):
    token = auth.csrf_token()
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
    )


def test_failures_for_one_username_are_limited_with_retry_after(client, auth):
    for _ in range(3):
        assert attempt(client, auth, "admin", "wrong password").status_code == 401
    refused = attempt(client, auth, "admin", ADMIN_PASSWORD)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in refused.get_data(as_text=True)
    # Another account from another address is not affected.
    assert attempt(client, auth, "viewer", "wrong again", address="192.0.2.9").status_code == 401


def test_failures_from_one_address_are_limited_across_usernames(client, auth):
    for number in range(5):
        assert attempt(client, auth, f"guess{number}", "x" * 10).status_code == 401
    assert attempt(client, auth, "someone", "x" * 10).status_code == 429
    assert attempt(client, auth, "someone", "x" * 10, address="192.0.2.2").status_code == 401


def test_successful_sign_ins_are_not_counted(client, auth):
    for _ in range(6):
        response = attempt(client, auth, "admin", ADMIN_PASSWORD)
        assert response.status_code == 302
        client.post("/logout", data={"csrf_token": auth.csrf_token("/admin/jobs")})
