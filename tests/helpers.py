"""Things tests share that are not fixtures: passwords, sign-in steps, waiting for runs.

(Kept out of conftest.py so that test modules can import them by a name that no
other folder's conftest shadows.)"""

ADMIN_PASSWORD = "correct horse battery"
USER_PASSWORD = "plain user password"


def settle(engine, timeout=5.0):
    """Wait for started runs to finish and their records to be written."""
    assert engine.wait_idle(timeout), "a job run did not finish in time"
    engine.writer.flush()


class AuthActions:
    """Sign in and out through the real form, CSRF token included."""

    def __init__(self, client):
        self._client = client

    def csrf_token(self, path="/login"):
        import re

        page = self._client.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page) or re.search(
            r'data-csrf-token="([^"]+)"', page
        )
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def login(self, username="admin", password=ADMIN_PASSWORD, next=None):
        data = {"username": username, "password": password, "csrf_token": self.csrf_token()}
        if next is not None:
            data["next"] = next
        return self._client.post("/login", data=data)

    def logout(self):
        token = self.csrf_token("/admin/jobs")
        return self._client.post("/logout", data={"csrf_token": token})


def take_the_lease_by_hand(engine):
    """Start the engine (its real loop, keeper and writer threads) and wait until it
    has had a round at the scheduler lease (it leads if it may and the lease is
    free): with a manual clock nothing falls due until the test moves
    the clock, and ``step()`` waits for the loop's next round.  Returns the engine."""
    engine.start()
    engine.keep_lease()
    engine.step()
    return engine


def admin_client(app):
    """A test client signed in as ``admin`` through the form, with ``csrf`` (a token
    for posts), ``app`` and ``engine`` attached."""
    client = app.test_client()
    actions = AuthActions(client)
    actions.login()
    client.csrf = actions.csrf_token("/admin/jobs")
    client.app, client.engine = app, app.extensions["jobs"]
    return client


LONG_LEASE = 400 * 86400.0  # outlasts any jump a test makes with its manual clock


def app_on(instance, clock, **config):
    """The app for a test on the ``instance`` folder, with a manual ``clock`` and a
    lease that outlasts any clock jump; ``config`` adds or overrides settings."""
    from app import create_app

    return create_app(
        {
            "TESTING": True,
            "JOBS_INSTANCE_PATH": str(instance),
            "JOBS_CLOCK": clock,
            "JOBS_LEASE_SECONDS": LONG_LEASE,
            **config,
        }
    )
