"""Waking on database commits: another connection's write is seen at once, nothing
else wakes the watch, and the engine falls back to polling where it cannot watch."""

import sqlite3
import sys
import threading
import time

import pytest

from scheduler.filewatch import FileWatch

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "jobs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")
    yield path, conn
    conn.close()


@pytest.fixture
def watch(database):
    path, _ = database
    opened = FileWatch.open(path)
    assert opened is not None
    yield opened
    opened.close()


def test_a_commit_by_another_connection_wakes_the_watch(database, watch):
    _, conn = database
    watch.discard()
    assert watch.wait(0) is False
    conn.execute("INSERT INTO t VALUES (1)")
    assert watch.wait(1.0) is True
    assert watch.wait(0) is False  # seen once


def test_other_files_in_the_folder_do_not_wake_it(database, watch, tmp_path):
    watch.discard()
    (tmp_path / "accounts.db").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("hello")
    assert watch.wait(0.05) is False


def test_wake_ends_a_wait_from_another_thread(watch):
    watch.discard()
    timer = threading.Timer(0.05, watch.wake)
    timer.start()
    try:
        assert watch.wait(5.0) is True
    finally:
        timer.cancel()


def test_a_closed_watch_never_blocks(watch):
    watch.close()
    watch.close()
    assert watch.wait(5.0) is True


def test_a_folder_that_cannot_be_watched_gives_none(tmp_path):
    assert FileWatch.open(tmp_path / "missing" / "jobs.db") is None


def test_the_engine_follows_another_process_at_once_with_the_watch(tmp_path):
    """A control saved by another engine on the file reaches this one's state in
    well under the keeper's own round (1 s), let alone the polling interval."""
    from scheduler import Engine, JobRegistry, Store

    registry = JobRegistry()
    registry.add(lambda ctx: None, name="zones", category="dns", interval="1h", description="Z.")
    path = tmp_path / "jobs.db"
    store = Store(path)
    store.migrate()
    follower = Engine(registry, Store(path), run_jobs=False, lease_ttl=60)
    other = Engine(registry, store, run_jobs=False, lease_ttl=60)
    follower.start()
    follower.keeper.feed.poll_interval = 30.0  # polling alone would take this long
    other.start()
    try:
        assert follower.keeper.feed._watch is not None
        seen = threading.Event()
        follower.sync()  # its first look at the file is done before the change
        with follower.subscribe() as sub:
            other.pause("zones", user="ann")
            paused_at = time.monotonic()
            for _ in range(50):  # bounded: 50 x 0.01 s
                events = sub.get(timeout=0.01)
                if any(e.key == "zones" and e.data["paused"] for e in events or []):
                    seen.set()
                    break
            took = time.monotonic() - paused_at
        # Without the watch the keeper would look only at its next lease round (1 s).
        assert seen.is_set(), "the pause did not reach the other engine within 0.5 s"
        assert took < 0.5
        assert follower.job("zones")["paused"] is True
    finally:
        follower.stop(grace=1)
        other.stop(grace=1)
