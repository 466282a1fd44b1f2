"""The engine driven step by step on a manual clock: timing, runs, controls, events."""

import threading
import time

import pytest
from helpers import settle

from scheduler import (
    RESYNC,
    IntervalError,
    JobBusyError,
    UnknownJobError,
)
from scheduler.clock import to_iso
from scheduler.sqlite_records import save_job_state


def calls_of(registry, name, interval="1m", **options):
    """Register a job that records each context it was called with."""
    seen = []

    def body(ctx):
        seen.append(ctx)

    registry.add(
        body, name=name, category="test", interval=interval, description=f"{name} job", **options
    )
    return seen


def blocking_job(registry, name, interval="1m", **options):
    """Register a job that runs until the returned event is set (or it is cancelled)."""
    release = threading.Event()
    started = threading.Event()

    def body(ctx):
        started.set()
        while not release.wait(0.01):
            if ctx.cancelled and options.get("honour_cancel", True):
                raise TimeoutError("stopped after being cancelled")

    options.pop("honour_cancel", None)
    registry.add(
        body, name=name, category="test", interval=interval, description=f"{name} job", **options
    )
    return started, release


def test_a_job_that_never_ran_first_runs_one_interval_after_start(registry, make_engine, clock):
    seen = calls_of(registry, "first", interval="1m")
    start = clock.now()
    engine = make_engine(registry)
    assert engine.job("first")["next_run"] == to_iso(start + 60)

    clock.advance(59.9)
    engine.step()
    settle(engine)
    assert seen == []

    clock.advance(0.1)
    engine.step()
    settle(engine)
    assert [ctx.slot for ctx in seen] == [start + 60]
    assert seen[0].trigger == "scheduled"
    job = engine.job("first")
    assert job["run_count"] == 1
    assert job["status"] == "idle"
    assert job["next_run"] == to_iso(start + 120)


def test_scheduled_runs_start_on_their_slots_with_no_cumulative_drift(registry, make_engine, clock):
    seen = calls_of(registry, "tick", interval="1s")
    start = clock.now()
    engine = make_engine(registry)
    # Wake-ups land at uneven moments after each slot, as real ones do.
    for lateness in [0.0, 0.3, 0.05, 0.9, 0.2] * 12:
        clock.advance(1.0)
        clock.advance(lateness)
        engine.step()
        settle(engine)
        clock._now -= lateness  # the next wake is measured from the slot again
    slots = [ctx.slot for ctx in seen]
    assert slots == [start + k for k in range(1, 61)]
    assert engine.job("tick")["next_run"] == to_iso(start + 61)


def test_missed_slots_are_skipped_not_run_in_a_burst(registry, make_engine, clock):
    seen = calls_of(registry, "tick", interval="1s")
    start = clock.now()
    engine = make_engine(registry)
    clock.advance(10.5)
    engine.step()
    settle(engine)
    assert [ctx.slot for ctx in seen] == [start + 1]
    assert engine.job("tick")["next_run"] == to_iso(start + 11)


def test_a_job_that_raises_is_recorded_and_the_others_still_run(registry, make_engine, clock):
    def broken(ctx):
        raise RuntimeError("zone file missing")

    registry.add(broken, name="broken", category="dns", interval="1m", description="Breaks.")
    seen = calls_of(registry, "healthy", interval="1m")
    start = clock.now()
    engine = make_engine(registry)
    clock.advance(60)
    engine.step()
    settle(engine)

    job = engine.job("broken")
    assert job["status"] == "error"
    assert job["last_error"] == "zone file missing"
    assert job["next_run"] == to_iso(start + 120)  # not left due, as schedule would
    assert len(seen) == 1
    run = engine.runs("broken")[0]
    assert run["outcome"] == "error"
    assert "RuntimeError: zone file missing" in run["traceback"]

    clock.advance(60)
    engine.step()
    settle(engine)
    assert len(seen) == 2
    assert engine.job("broken")["run_count"] == 2


def test_a_job_that_fails_then_succeeds_is_idle_again(registry, make_engine, clock):
    outcomes = iter([RuntimeError("first"), None])

    def flaky(ctx):
        error = next(outcomes)
        if error:
            raise error

    registry.add(flaky, name="flaky", category="dns", interval="1m", description="Flaky.")
    engine = make_engine(registry)
    engine.run_now("flaky")
    settle(engine)
    assert engine.job("flaky")["status"] == "error"
    engine.run_now("flaky")
    settle(engine)
    job = engine.job("flaky")
    assert job["status"] == "idle"
    assert job["last_error"] is None


def test_a_job_never_overlaps_itself(registry, make_engine, clock):
    started, release = blocking_job(registry, "slow", interval="1s")
    start = clock.now()
    engine = make_engine(registry)
    clock.advance(1)
    engine.step()
    assert started.wait(2)
    assert engine.job("slow")["status"] == "running"

    clock.advance(1)
    engine.step()
    job = engine.job("slow")
    assert job["run_count"] == 1
    assert job["next_run"] == to_iso(start + 3)
    release.set()
    settle(engine)
    assert engine.job("slow")["status"] == "idle"
    assert [r["slot"] for r in engine.runs("slow")] == [to_iso(start + 1)]


def test_run_now_starts_a_manual_run_that_does_not_move_the_schedule(registry, make_engine, clock):
    seen = calls_of(registry, "zones", interval="5m")
    start = clock.now()
    engine = make_engine(registry)
    clock.advance(30)
    job = engine.run_now("zones", user="alice")
    assert job["run_count"] == 1
    settle(engine)
    assert seen[0].trigger == "manual"
    assert seen[0].user == "alice"
    job = engine.job("zones")
    assert job["next_run"] == to_iso(start + 300)
    assert job["last_run"] == to_iso(start + 30)
    run = engine.runs("zones")[0]
    assert (run["trigger"], run["user"], run["outcome"]) == ("manual", "alice", "ok")


def test_run_now_works_while_paused_and_keeps_the_job_paused(registry, make_engine, clock):
    seen = calls_of(registry, "zones")
    engine = make_engine(registry)
    engine.pause("zones")
    engine.run_now("zones")
    settle(engine)
    assert len(seen) == 1
    job = engine.job("zones")
    assert job["status"] == "paused"
    assert job["next_run"] is None


def test_run_now_is_refused_while_a_run_is_executing(registry, make_engine, clock):
    started, release = blocking_job(registry, "slow", timeout="1m")
    engine = make_engine(registry)
    engine.run_now("slow")
    assert started.wait(2)
    with pytest.raises(JobBusyError, match="already running"):
        engine.run_now("slow")
    assert engine.job("slow")["run_count"] == 1
    release.set()
    settle(engine)


def test_a_stuck_run_is_marked_timed_out_and_replaced_by_run_now(registry, make_engine, clock):
    started, release = blocking_job(registry, "stuck", timeout="30s", honour_cancel=False)
    engine = make_engine(registry)
    engine.run_now("stuck", user="bob")
    assert started.wait(2)
    clock.advance(31)
    engine.step()
    job = engine.job("stuck")
    assert job["stuck"] is True
    assert job["status"] == "running"

    started.clear()
    engine.run_now("stuck", user="bob")
    assert started.wait(2)
    release.set()
    settle(engine)
    runs = engine.runs("stuck")
    assert [r["outcome"] for r in runs] == ["ok", "timed out"]
    assert "replaced by a new run" in runs[1]["error"]
    assert "after its timeout" in " ".join(runs[1]["log"])
    assert engine.job("stuck")["run_count"] == 2


def test_a_run_past_its_timeout_is_asked_to_stop_and_recorded_as_timed_out(
    registry, make_engine, clock
):
    started, release = blocking_job(registry, "probe", timeout="10s")
    engine = make_engine(registry)
    engine.run_now("probe")
    assert started.wait(2)
    clock.advance(11)
    engine.step()  # flags the run; the body sees ctx.cancelled and stops
    settle(engine)
    job = engine.job("probe")
    assert job["status"] == "error"
    assert job["last_outcome"] == "timed out"
    assert "timeout of 10s" in job["last_error"]


def test_pause_stops_scheduled_runs_and_resume_restores_them(registry, make_engine, clock):
    seen = calls_of(registry, "sync", interval="1m")
    start = clock.now()
    engine = make_engine(registry)
    clock.advance(60)
    engine.step()
    settle(engine)
    assert len(seen) == 1

    job = engine.pause("sync", user="alice")
    assert (job["status"], job["next_run"], job["paused"]) == ("paused", None, True)
    clock.advance(600)
    engine.step()
    settle(engine)
    assert len(seen) == 1

    job = engine.resume("sync", user="alice")
    assert job["status"] == "idle"
    assert job["next_run"] == to_iso(start + 660)  # last run + 1m has passed: at once
    engine.step()
    settle(engine)
    assert len(seen) == 2


def test_resume_schedules_one_interval_after_the_last_run_when_that_is_ahead(
    registry, make_engine, clock
):
    calls_of(registry, "sync", interval="1h")
    engine = make_engine(registry)
    clock.advance(10)
    engine.run_now("sync")
    settle(engine)
    engine.pause("sync")
    clock.advance(600)
    job = engine.resume("sync")
    assert job["next_run"] == to_iso(clock.now() - 600 + 3600)


def test_a_run_in_progress_finishes_after_pause(registry, make_engine, clock):
    started, release = blocking_job(registry, "slow")
    engine = make_engine(registry)
    engine.run_now("slow")
    assert started.wait(2)
    assert engine.pause("slow")["status"] == "running"
    release.set()
    settle(engine)
    job = engine.job("slow")
    assert job["status"] == "paused"
    assert engine.runs("slow")[0]["outcome"] == "ok"


def test_set_interval_takes_effect_at_once(registry, make_engine, clock):
    seen = calls_of(registry, "poll", interval="1h")
    engine = make_engine(registry)
    clock.advance(100)
    engine.run_now("poll")
    settle(engine)
    last_run = clock.now()

    clock.advance(200)
    job = engine.set_interval("poll", "5m", user="carol")
    assert job["interval"] == "5m"
    assert job["interval_seconds"] == 300
    assert job["interval_overridden"] is True
    assert job["next_run"] == to_iso(last_run + 300)

    job = engine.set_interval("poll", "1m")  # last run + 1m has passed: now
    assert job["next_run"] == to_iso(clock.now())
    engine.step()
    settle(engine)
    assert len(seen) == 2


def test_bad_interval_changes_nothing(registry, make_engine, clock, store):
    calls_of(registry, "poll", interval="1h")
    engine = make_engine(registry)
    before = engine.job("poll")
    for bad in ["abc", "", "0s", "30m1h", "5M", None, 5]:
        with pytest.raises(IntervalError):
            engine.set_interval("poll", bad)
    assert engine.job("poll") == before
    assert store.audit_trail() == []


def test_reset_puts_the_default_interval_back(registry, make_engine, clock):
    calls_of(registry, "poll", interval="1h")
    engine = make_engine(registry)
    engine.set_interval("poll", "90m")
    assert engine.job("poll")["interval"] == "1h30m"
    job = engine.reset_interval("poll")
    assert (job["interval"], job["interval_overridden"]) == ("1h", False)


@pytest.mark.parametrize(
    "control",
    [
        lambda e: e.run_now("nope"),
        lambda e: e.pause("nope"),
        lambda e: e.resume("nope"),
        lambda e: e.set_interval("nope", "5m"),
        lambda e: e.reset_interval("nope"),
        lambda e: e.job("nope"),
        lambda e: e.runs("nope"),
        lambda e: e.pause(None),
    ],
)
def test_controls_on_an_unknown_job_raise_a_clear_error(registry, make_engine, control):
    calls_of(registry, "known")
    engine = make_engine(registry)
    with pytest.raises(UnknownJobError, match="No job named"):
        control(engine)


def test_every_control_is_in_the_audit_trail(registry, make_engine, clock, store):
    calls_of(registry, "poll", interval="1h")
    engine = make_engine(registry)
    engine.pause("poll", user="alice")
    engine.resume("poll", user="alice")
    engine.set_interval("poll", "5m", user="bob")
    engine.reset_interval("poll", user="bob")
    engine.run_now("poll", user="carol")
    settle(engine)
    trail = [
        (a["user"], a["action"], a["old_value"], a["new_value"])
        for a in reversed(store.audit_trail())
    ]
    assert trail[:4] == [
        ("alice", "pause", "active", "paused"),
        ("alice", "resume", "paused", "active"),
        ("bob", "interval", "1h", "5m"),
        ("bob", "reset", "5m", "1h"),
    ]
    assert trail[4][:2] == ("carol", "run")


def test_progress_is_published_while_a_run_reports_it(registry, make_engine, clock):
    proceed = threading.Event()

    def long(ctx):
        ctx.progress(0.25, "zone 1 of 4")
        proceed.wait(2)

    registry.add(long, name="long", category="dns", interval="1h", description="Long.")
    engine = make_engine(registry)
    with engine.subscribe() as subscription:
        engine.run_now("long")
        progress = None
        for _ in range(100):
            events = subscription.get(timeout=0.05)
            progress = next((e.data["progress"] for e in events if e.data.get("progress")), None)
            if progress:
                break
        assert progress == {"fraction": 0.25, "message": "zone 1 of 4"}
        proceed.set()
        settle(engine)
    assert engine.job("long")["progress"] is None


def test_bad_progress_values_fail_the_run_with_a_clear_error(registry, make_engine, clock):
    def bad(ctx):
        ctx.progress("half")

    registry.add(bad, name="bad", category="dns", interval="1h", description="Bad.")
    engine = make_engine(registry)
    engine.run_now("bad")
    settle(engine)
    assert "number from 0 to 1" in engine.job("bad")["last_error"]


def test_subscribers_get_a_snapshot_then_versioned_changes(registry, make_engine, clock):
    calls_of(registry, "a")
    calls_of(registry, "b")
    engine = make_engine(registry)
    subscription = engine.subscribe()
    snapshot = subscription.snapshot
    assert [j["name"] for j in snapshot["jobs"]] == ["a", "b"]
    assert snapshot["scheduler"]["running"] is True

    engine.pause("a")
    engine.set_interval("b", "5m")
    events = subscription.get(timeout=1)
    assert [(e.key, e.data["status"]) for e in events] == [("a", "paused"), ("b", "idle")]
    versions = [e.version for e in events]
    assert versions == sorted(versions)
    assert versions[0] > snapshot["version"]
    assert subscription.get(timeout=0) == []
    subscription.close()


def test_a_subscriber_keeps_only_the_latest_state_per_job(registry, make_engine, clock):
    calls_of(registry, "a")
    engine = make_engine(registry)
    with engine.subscribe() as subscription:
        engine.pause("a")
        engine.resume("a")
        engine.set_interval("a", "5m")
        events = subscription.get(timeout=1)
    assert len(events) == 1
    assert events[0].data["interval"] == "5m"
    assert events[0].data["paused"] is False


def test_a_subscriber_that_falls_too_far_behind_is_told_to_resync(registry, store, clock):
    from scheduler import Engine, EventBus

    calls_of(registry, "a")
    engine = Engine(registry, store, clock=clock, bus=EventBus(max_pending=3))
    engine.start()
    with engine.subscribe() as subscription:
        for _ in range(3):
            engine.pause("a")
            engine.resume("a")
        assert subscription.get(timeout=0) == RESYNC
        engine.pause("a")
        assert [e.data["status"] for e in subscription.get(timeout=1)] == ["paused"]
    engine.stop(grace=0)


def test_closing_a_subscription_releases_it(registry, make_engine):
    calls_of(registry, "a")
    engine = make_engine(registry)
    subscription = engine.subscribe()
    assert engine.bus.subscriber_count == 1
    subscription.close()
    subscription.close()
    assert engine.bus.subscriber_count == 0


def test_the_loop_survives_a_failing_step(registry, store, clock, monkeypatch):
    from scheduler import Engine

    seen = calls_of(registry, "tick", interval="1s")
    engine = Engine(registry, store, clock=clock, lease_ttl=5.0)
    engine.loop.fault_backoff = 0.01
    failures = []
    original = engine.loop._dispatch_due

    def dispatch_once_broken():
        if not failures:
            failures.append(clock.now())
            raise OSError("disk hiccup")
        return original()

    monkeypatch.setattr(engine.loop, "_dispatch_due", dispatch_once_broken)
    engine.start()
    try:
        deadline = time.monotonic() + 10  # bounded: the loop must run the job by then
        while time.monotonic() < deadline:
            clock.advance(1)  # wakes the loop
            if seen:
                break
            engine.wait_idle(0.01)
            threading.Event().wait(0.01)
        assert failures, "the injected fault never happened"
        assert seen, "the loop stopped after a failed step"
    finally:
        engine.stop(grace=1)


def test_status_follows_one_rule():
    from scheduler.registry import JobDefinition
    from scheduler.state import JobState, Run

    definition = JobDefinition("j", "dns", "J.", 60, lambda ctx: None)
    state = JobState(definition, interval=60)
    assert state.status == "idle"
    state.last_outcome = "error"
    assert state.status == "error"
    state.paused = True
    assert state.status == "paused"
    state.current = Run(job="j", trigger="manual", started_at=0.0)
    assert state.status == "running"
    for outcome, status in [("ok", "idle"), ("timed out", "error"), ("interrupted", "error")]:
        state.current, state.paused, state.last_outcome = None, False, outcome
        assert state.status == status


def test_a_run_that_finishes_at_once_is_recorded_as_finished(registry, make_engine, store):
    calls_of(registry, "quick", interval="1s")
    engine = make_engine(registry)
    for _ in range(50):
        engine.run_now("quick")
        assert engine.wait_idle(2)
    engine.writer.flush()
    assert [r["outcome"] for r in store.runs("quick", 100)] == ["ok"] * 50


def test_a_burst_of_due_jobs_on_the_running_loop_starts_each_once_and_records_them_all(
    store, registry
):
    """The loop hands every due job over before recording or publishing any of them;
    afterwards each run is on disk with its slot and the page shows every job idle."""
    import threading
    import time as real_time

    from scheduler import Engine

    count = 300
    ran = []
    lock = threading.Lock()
    done = threading.Event()

    def body(ctx):
        with lock:
            ran.append((ctx.job, ctx.slot))
            if len(ran) == count:
                done.set()

    names = [f"job{i:03d}" for i in range(count)]
    for name in names:
        registry.add(body, name=name, category="dns", interval="1h", description="Burst.")
    slot = real_time.time() + 0.3  # a fraction of a second on the real clock
    store._write(lambda conn: [save_job_state(conn, n, next_run=slot) for n in names])
    engine = Engine(registry, store, lease_ttl=60)
    engine.start()
    try:
        with engine.subscribe() as subscription:
            assert done.wait(5), f"{len(ran)} of {count} jobs ran"
            assert engine.wait_idle(5)
            latest = {}
            for _ in range(100):  # bounded: until every job's final state arrived
                for event in subscription.get(timeout=0.05) or []:
                    if event.kind == "job":
                        latest[event.key] = event.data
                if all(latest.get(n, {}).get("run_count") == 1 for n in names):
                    break
        assert sorted(ran) == [(n, slot) for n in names]
        assert {latest[n]["status"] for n in names} == {"idle"}
        assert engine.writer.flush()
        for name in names[:: count // 10]:
            (run,) = store.runs(name)
            assert (run["slot"], run["outcome"], run["trigger"]) == (slot, "ok", "scheduled")
        assert store.count_runs() == count
    finally:
        engine.stop(grace=1)


def test_what_a_replaced_run_logs_afterwards_is_kept_with_its_record(registry, make_engine, clock):
    first_started, finish = threading.Event(), threading.Event()

    def body(ctx):
        if first_started.is_set():
            return  # the replacement run
        first_started.set()
        finish.wait(5)
        ctx.log.info("cleaned up after being replaced")

    registry.add(body, name="slow", category="t", interval="1h", timeout="1s", description="S.")
    engine = make_engine(registry)
    engine.run_now("slow")
    assert first_started.wait(2)
    clock.advance(1)
    engine.step()
    engine.run_now("slow")  # replaces the stuck run, recorded as timed out
    finish.set()
    settle(engine)
    replaced = [r for r in engine.runs("slow") if r["outcome"] == "timed out"]
    assert len(replaced) == 1
    assert "INFO cleaned up after being replaced" in replaced[0]["log"]
