"""Shared fixtures: a manual clock, a migrated database, and engines driven step by step."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import (  # noqa: E402
    ADMIN_PASSWORD,
    LONG_LEASE,
    USER_PASSWORD,
    AuthActions,
    app_on,
    take_the_lease_by_hand,
)

from scheduler import Engine, JobRegistry, ManualClock, Store  # noqa: E402

os.environ["TZ"] = "UTC"  # no test may depend on the host's time zone


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "jobs.db"


@pytest.fixture
def store(db_path):
    store = Store(db_path)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def registry():
    return JobRegistry()


@pytest.fixture
def make_engine(store, clock):
    """Build an engine on the shared store and clock that has taken the lease and
    loaded its state, but runs nothing by itself: tests call ``step()``.  Its lease
    outlasts any clock jump a test makes, unless the test gives a ``lease_ttl``."""
    engines = []

    def make(registry, *, lead=True, **options):
        engine = Engine(
            registry,
            store,
            clock=clock,
            lease_ttl=options.pop("lease_ttl", LONG_LEASE),
            **options,
        )
        if lead:
            take_the_lease_by_hand(engine)
        else:
            engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop(grace=2.0)


# -- the web app ------------------------------------------------------------------


@pytest.fixture
def app(tmp_path, clock):
    """The app on a temporary instance folder, with the demo jobs, a manual clock,
    an ``admin`` and a non-admin ``viewer``; its scheduler is driven by hand."""
    from extensions import limiter

    app = app_on(
        tmp_path / "instance",
        clock,
        JOBS_DEMO=True,
        SSE_HEARTBEAT_SECONDS=0.2,
        SSE_MAX_AGE_SECONDS=5.0,
    )
    limiter.reset()  # counters are per process; each test starts with none
    accounts = app.extensions["accounts"]
    accounts.create_user("admin", ADMIN_PASSWORD, admin=True)
    accounts.create_user("viewer", USER_PASSWORD, admin=False)
    engine = take_the_lease_by_hand(app.extensions["jobs"])
    yield app
    engine.stop(grace=2)
    accounts.close()
    engine.store.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def admin(client, auth):
    """A client signed in as ``admin``, and its CSRF token for posts."""
    auth.login()
    client.csrf = auth.csrf_token("/admin/jobs")
    return client
