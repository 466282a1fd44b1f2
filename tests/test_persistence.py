"""What survives a restart, and what the database refuses."""

import sqlite3
import threading

import pytest
from helpers import LONG_LEASE, settle

from scheduler import Engine, Store, StoreError
from scheduler.clock import to_iso
from scheduler.store import SCHEMA_VERSION


def add_job(registry, name, interval, body=None):
    registry.add(
        body or (lambda ctx: None),
        name=name,
        category="test",
        interval=interval,
        description=f"{name} job",
    )


def restart(engine, registry, store, clock, **options):
    """Stop ``engine`` the way a server does and start a fresh one on the same file."""
    engine.stop(grace=1)
    fresh = Engine(registry, store, clock=clock, lease_ttl=LONG_LEASE, **options)
    fresh.start()
    fresh.keep_lease()
    fresh.step()
    return fresh


def test_overrides_are_back_after_a_restart(registry, make_engine, store, clock):
    add_job(registry, "zones", "5m")
    add_job(registry, "leases", "10m")
    engine = make_engine(registry)
    engine.pause("zones", user="alice")
    engine.set_interval("leases", "1h30m", user="alice")

    engine = restart(engine, registry, store, clock)
    zones, leases = engine.job("zones"), engine.job("leases")
    assert (zones["paused"], zones["status"], zones["next_run"]) == (True, "paused", None)
    assert (leases["interval"], leases["interval_overridden"]) == ("1h30m", True)
    engine.stop(grace=0)


def test_an_acknowledged_control_is_on_disk_when_it_returns(registry, make_engine, db_path):
    add_job(registry, "zones", "5m")
    engine = make_engine(registry)
    engine.pause("zones")
    # A second connection, as another process would open, sees it without any flush.
    with sqlite3.connect(db_path) as other:
        assert other.execute("SELECT paused FROM job_settings WHERE job='zones'").fetchone() == (1,)


def test_a_daily_job_restarted_every_hour_still_runs_daily(registry, make_engine, store, clock):
    seen = []
    add_job(registry, "daily", "1d", body=lambda ctx: seen.append(ctx.slot))
    start = clock.now()
    engine = make_engine(registry)
    for _ in range(23):
        clock.advance(3600)
        engine = restart(engine, registry, store, clock)
        assert engine.job("daily")["next_run"] == to_iso(start + 86400)
    clock.advance(3600)
    engine.step()
    settle(engine)
    assert seen == [start + 86400]
    engine.stop(grace=1)


def test_jobs_overdue_after_downtime_run_soon_and_staggered(registry, make_engine, store, clock):
    seen = []
    for name in ("a", "b", "c"):
        add_job(registry, name, "1m", body=lambda ctx: seen.append((ctx.job, ctx.slot)))
    engine = make_engine(registry)
    clock.advance(60)
    engine.step()
    settle(engine)
    engine.stop(grace=1)

    clock.advance(3600)  # down for an hour
    engine = Engine(registry, store, clock=clock, lease_ttl=LONG_LEASE)
    engine.start()
    engine.keep_lease()
    engine.step()
    now = clock.now()
    next_runs = sorted(engine.job(n)["next_run"] for n in ("a", "b", "c"))
    assert next_runs == [to_iso(now + 0.25), to_iso(now + 0.5), to_iso(now + 0.75)]
    seen.clear()
    clock.advance(1)
    engine.step()
    settle(engine)
    assert sorted(job for job, _ in seen) == ["a", "b", "c"]
    engine.stop(grace=1)


def test_a_run_cut_off_by_a_crash_is_recorded_as_interrupted(registry, store, clock):
    started, release = threading.Event(), threading.Event()

    def long(ctx):
        started.set()
        release.wait(5)

    add_job(registry, "long", "1h", body=long)
    crashed = Engine(registry, store, clock=clock, lease_ttl=5.0, owner="crashed")
    crashed.start()
    crashed.keep_lease()
    crashed.step()
    crashed.run_now("long")
    assert started.wait(2)
    crashed.writer.flush()
    assert store.runs("long")[0]["outcome"] == "running"
    # The process is gone: it neither finishes the run nor renews its lease.

    clock.advance(6)
    successor = Engine(registry, store, clock=clock, lease_ttl=5.0, owner="successor")
    successor.start()
    successor.keep_lease()
    successor.step()
    assert successor.leader
    run = store.runs("long")[0]
    assert run["outcome"] == "interrupted"
    job = successor.job("long")
    assert job["status"] == "error"
    assert "Interrupted" in job["last_error"]
    release.set()
    crashed.wait_idle(2)
    successor.stop(grace=0)
    crashed.stop(grace=0)  # its threads, still alive in this test process


def test_the_schema_upgrades_from_an_older_version_keeping_data(db_path):
    from scheduler.sqlite_schema import MIGRATIONS

    old = Store(db_path)
    old.apply_migrations("scheduler", MIGRATIONS[:1])
    old._write(
        lambda conn: conn.execute(
            "INSERT INTO job_settings (job, interval_seconds, paused) VALUES ('zones', 300, 1)"
        )
    )
    old.close()
    store = Store(db_path)
    assert store.migrate() == 1
    assert store.schema_version() == SCHEMA_VERSION
    zones = store.load_settings()["zones"]
    assert (zones.interval_seconds, zones.paused) == (300, True)
    store.close()


def test_the_schema_has_a_version_and_upgrades_an_empty_file(db_path):
    sqlite3.connect(db_path).close()  # an empty file, version 0
    store = Store(db_path)
    assert store.migrate() == 0
    assert store.schema_version() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION  # a second start changes nothing
    store.close()


def test_a_database_from_a_newer_program_is_refused(db_path):
    Store(db_path).migrate()
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE component = 'scheduler'")
    store = Store(db_path)
    with pytest.raises(StoreError, match="newer than"):
        store.migrate()
    store.close()


def test_a_corrupt_database_is_refused_with_its_name_and_left_alone(db_path):
    garbage = b"this is not a database" * 100
    db_path.write_bytes(garbage)
    store = Store(db_path)
    with pytest.raises(StoreError, match=str(db_path)):
        store.migrate()
    store.close()
    assert db_path.read_bytes() == garbage


def test_history_is_pruned_by_retention(registry, make_engine, store, clock):
    add_job(registry, "zones", "5m")
    engine = make_engine(registry)
    engine.run_now("zones")
    settle(engine)
    clock.advance(40 * 86400)
    engine.run_now("zones")
    settle(engine)
    assert store.count_runs("zones") == 2
    assert store.prune_history(30 * 86400, now=clock.now()) == 1
    assert [r["started_at"] for r in store.runs("zones")] == [clock.now()]


def test_run_history_keeps_outcome_trigger_error_and_log(registry, make_engine, store):
    def chatty(ctx):
        ctx.log.info("checked %d zones", 3)
        ctx.log.warning("serial of %s did not move", "example.test")
        raise ValueError("bad SOA")

    add_job(registry, "zones", "5m", body=chatty)
    engine = make_engine(registry)
    engine.run_now("zones", user="alice")
    settle(engine)
    run = engine.runs("zones")[0]
    assert run["outcome"] == "error"
    assert (run["trigger"], run["user"], run["error"]) == ("manual", "alice", "bad SOA")
    assert run["log"] == ["INFO checked 3 zones", "WARNING serial of example.test did not move"]
    assert run["duration_ms"] is not None and run["finished_at"] is not None


def test_a_job_that_logs_megabytes_keeps_a_bounded_tail(registry, make_engine, store):
    def noisy(ctx):
        for i in range(5000):
            ctx.log.info("line %d %s", i, "x" * 5000)

    add_job(registry, "noisy", "5m", body=noisy)
    engine = make_engine(registry)
    engine.run_now("noisy")
    settle(engine, timeout=20)
    log = engine.runs("noisy")[0]["log"]
    assert len(log) == 201
    assert log[0] == "… 4800 earlier lines not kept"
    assert log[-1].startswith("INFO line 4999")
    assert sum(len(line) for line in log) < 500_000


def test_a_job_that_returns_junk_has_it_recorded_as_text(registry, make_engine, store):
    class Junk:
        def __repr__(self):
            raise RuntimeError("no repr")

    add_job(registry, "junk", "5m", body=lambda ctx: Junk())
    add_job(registry, "big", "5m", body=lambda ctx: "y" * 10_000)
    engine = make_engine(registry)
    engine.run_now("junk")
    engine.run_now("big")
    settle(engine)
    assert engine.runs("junk")[0]["outcome"] == "ok"
    assert "unprintable Junk" in engine.runs("junk")[0]["result"]
    assert len(engine.runs("big")[0]["result"]) < 600


def test_a_run_now_is_on_disk_with_its_audit_line_before_it_is_acknowledged(
    registry, make_engine, store
):
    add_job(registry, "zones", "5m")
    engine = make_engine(registry)
    engine.run_now("zones", user="alice")
    # Read at once, before the background writer had any chance to write.
    (run,) = store.runs("zones")
    assert (run["trigger"], run["user"]) == ("manual", "alice")
    (line,) = store.audit_trail("zones")
    assert (line["user"], line["action"], line["new_value"]) == ("alice", "run", run["run_id"])
    settle(engine)


@pytest.mark.parametrize(
    "saves, control",
    [
        ("save_control", lambda engine: engine.pause("zones", user="alice")),
        ("save_control", lambda engine: engine.set_interval("zones", "1m", user="alice")),
        ("record_manual_run", lambda engine: engine.run_now("zones", user="alice")),
    ],
    ids=["pause", "interval", "run now"],
)
def test_a_control_that_cannot_be_saved_changes_and_starts_nothing(
    registry, make_engine, store, monkeypatch, saves, control
):
    started = []
    add_job(registry, "zones", "5m", body=lambda ctx: started.append(ctx.trigger))
    engine = make_engine(registry)
    before = engine.job("zones")

    def disk_full(*args, **kwargs):
        raise StoreError("Cannot write to the database: database or disk is full")

    monkeypatch.setattr(store, saves, disk_full)
    with pytest.raises(StoreError, match="disk is full"):
        control(engine)
    settle(engine)
    assert started == []
    assert engine.job("zones") == before
