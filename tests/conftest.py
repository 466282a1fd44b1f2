"""Shared fixtures: a manual clock, a migrated database, and engines driven step by step."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
            lease_ttl=options.pop("lease_ttl", 400 * 86400.0),
            **options,
        )
        engine.start(threads=False)
        if lead:
            engine.keep_lease()
            engine.step()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop(grace=2.0)


def settle(engine, timeout=5.0):
    """Wait for started runs to finish and their records to be written."""
    assert engine.wait_idle(timeout), "a job run did not finish in time"
    engine.writer.flush()
