"""Several processes share one database: each shows the scheduler's state and may
take controls, which reach the scheduler (engines in one test process, each with
its own owner id, standing for separate processes; see test_lease_processes.py
for real ones)."""

import pytest
from helpers import LONG_LEASE, settle

from scheduler import Engine, JobBusyError


def engine_on(store, clock, registry, owner, **options):
    engine = Engine(registry, store, clock=clock, lease_ttl=LONG_LEASE, owner=owner, **options)
    engine.start()
    return engine


@pytest.fixture
def pair(store, clock, registry):
    """(scheduler, follower) with one 1-minute job named ``zones``."""
    registry.add(
        lambda ctx: ctx.log.info("checked"),
        name="zones",
        category="dns",
        interval="1m",
        description="Zones.",
    )
    leader = engine_on(store, clock, registry, "A")
    leader.keep_lease()
    leader.step()
    follower = engine_on(store, clock, registry, "B")
    follower.keep_lease()
    follower.step()
    assert leader.leader and not follower.leader
    yield leader, follower
    for engine in (leader, follower):
        engine.stop(grace=1)


def sync_all(*engines):
    for engine in engines:
        engine.step()  # what the loop publishes reaches the writer...
        engine.writer.flush()  # ...and the file
    for engine in engines:
        engine.sync()
        engine.step()


def test_a_pause_through_a_follower_reaches_the_scheduler_and_its_streams(pair, clock):
    leader, follower = pair
    with leader.subscribe() as subscription:
        job = follower.pause("zones", user="alice")
        assert job["status"] == "paused"
        sync_all(leader)
        events = subscription.get(timeout=1)
    assert [(e.key, e.data["status"]) for e in events] == [("zones", "paused")]
    assert "zones" not in leader.loop.timetable
    clock.advance(600)
    leader.step()
    settle(leader)
    assert leader.job("zones")["run_count"] == 0


def test_an_interval_set_through_a_follower_moves_the_scheduled_slot(pair, clock):
    leader, follower = pair
    follower.set_interval("zones", "5m")
    sync_all(leader)
    assert leader.job("zones")["interval"] == "5m"
    assert leader.loop.timetable.next_run("zones") == leader.started_at + 300


def test_run_now_through_a_follower_is_started_by_the_scheduler(pair, clock):
    leader, follower = pair
    follower.run_now("zones", user="bob")
    sync_all(leader)
    settle(leader)
    run = leader.runs("zones")[0]
    assert (run["trigger"], run["user"], run["outcome"]) == ("manual", "bob", "ok")


def test_followers_show_the_schedulers_live_state(pair, clock):
    leader, follower = pair
    leader.run_now("zones")
    settle(leader)
    sync_all(leader, follower)
    assert follower.job("zones") == leader.job("zones")
    assert follower.job("zones")["run_count"] == 1


def test_a_follower_refuses_run_now_while_the_scheduler_runs_the_job(store, clock, registry):
    import threading

    release = threading.Event()
    registry.add(
        lambda ctx: release.wait(5), name="slow", category="dns", interval="1h", description="Slow."
    )
    leader = engine_on(store, clock, registry, "A")
    leader.keep_lease()
    follower = engine_on(store, clock, registry, "B")
    assert leader.leader and not follower.leader
    leader.run_now("slow")
    sync_all(leader, follower)
    assert follower.job("slow")["status"] == "running"
    with pytest.raises(JobBusyError):
        follower.run_now("slow")
    release.set()
    for engine in (leader, follower):
        engine.stop(grace=2)


def test_a_control_saved_elsewhere_is_kept_by_a_control_of_the_other_setting(pair, store):
    """Each process changes only the setting its control is about, reading the saved
    one inside its write: a stale copy never undoes another process's control."""
    leader, follower = pair
    follower.pause("zones", user="alice")  # the leader has not looked yet
    job = leader.set_interval("zones", "5m", user="bob")
    assert (job["paused"], job["interval"]) == (True, "5m")
    settings = store.load_settings()["zones"]
    assert (settings.paused, settings.interval_seconds) == (True, 300)
    audit = [
        (a["user"], a["action"], a["old_value"], a["new_value"]) for a in store.audit_trail("zones")
    ]
    assert audit == [("bob", "interval", "1m", "5m"), ("alice", "pause", "active", "paused")]


def test_a_live_state_written_before_a_control_does_not_undo_it(pair, clock):
    leader, follower = pair
    with follower.subscribe() as subscription:
        leader.run_now("zones")  # its live states are written for the follower...
        settle(leader)
        leader.pause("zones", user="alice")  # ...then the pause, saved after them
        leader.writer.flush()
        follower.sync()
        events = subscription.get(timeout=1)  # (the latest of each job)
    assert [(e.key, e.data["status"]) for e in events if e.key == "zones"][-1:] == [
        ("zones", "paused")
    ]
    assert follower.job("zones")["paused"] is True
    assert follower.job("zones")["next_run"] is None


def test_a_live_state_whose_write_failed_reaches_followers_once_writes_work(pair, monkeypatch):
    import sqlite3

    leader, follower = pair
    leader.writer.flush()  # nothing of the start-up left queued
    leader.writer._retry_delay = 0.01
    real_write, failures = leader.store._write, []

    def first_batch_fails(fn):
        if failures or fn.__qualname__ != "Store.write_records.<locals>.<lambda>":
            return real_write(fn)
        failures.append(fn)

        def written_then_lost(conn):  # as when the commit fails: the disk is full
            fn(conn)
            raise sqlite3.OperationalError("database or disk is full")

        return real_write(written_then_lost)

    monkeypatch.setattr(leader.store, "_write", first_batch_fails)
    leader.run_now("zones")  # its finish and live state go to the writer together
    settle(leader)
    assert failures, "no batch failed"
    follower.sync()
    job = follower.job("zones")
    assert (job["run_count"], job["last_outcome"], job["status"]) == (1, "ok", "idle")


def test_an_interval_saved_while_no_scheduler_runs_is_kept_by_the_next_one(store, clock, registry):
    from scheduler.clock import to_iso

    registry.add(lambda ctx: None, name="zones", category="dns", interval="1h", description="Z.")
    first = engine_on(store, clock, registry, "A")
    first.keep_lease()
    assert first.job("zones")["next_run"] == to_iso(first.started_at + 3600)
    first.stop(grace=1)
    web = engine_on(store, clock, registry, "B", run_jobs=False)
    web.set_interval("zones", "1m", user="ann")  # no scheduler runs to take it in
    web.stop(grace=1)
    successor = engine_on(store, clock, registry, "C")
    try:
        assert successor.leader
        assert successor.job("zones")["next_run"] == to_iso(web.started_at + 60)
    finally:
        successor.stop(grace=1)
