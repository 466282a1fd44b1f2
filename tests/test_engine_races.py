"""Races the engine once had, each reached through its public controls with the real
loop, keeper and writer threads running (a window is widened where a big burst or
a slow disk would widen it), and what a user would then see."""

import sqlite3
import threading
import time

import pytest
from helpers import LONG_LEASE

from scheduler import Engine, JobBusyError, NotLeaderError, Store, StoreError


def wait_for(predicate, timeout=3.0, what="the condition"):
    """Poll ``predicate`` on the real clock, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def gated_job(registry, name, interval="1h", **options):
    """A job whose body waits for the returned gate; ``ran`` lists its slots."""
    gate, ran = threading.Event(), []

    def body(ctx):
        ran.append(ctx.slot)
        gate.wait(5)

    registry.add(body, name=name, category="t", interval=interval, description=name, **options)
    return gate, ran


def fail_once(store, method):
    """Make ``store.method`` fail once as a locked database does; the returned list
    is non-empty once it has."""
    real, failed = getattr(store, method), []

    def fails_once(*args, **kwargs):
        if not failed:
            failed.append(True)
            raise StoreError("The database is locked.")
        return real(*args, **kwargs)

    setattr(store, method, fails_once)
    return failed


def hanging_job(registry, name, timeout):
    """A job that runs until it is asked to stop (``cancelled`` is then set), then
    waits for ``finish``, so that a test can look at the stuck run first."""
    cancelled, finish = threading.Event(), threading.Event()

    def hang(ctx):
        while not ctx.cancelled:
            time.sleep(0.005)
        cancelled.set()
        finish.wait(5)

    registry.add(hang, name=name, category="t", interval="1h", timeout=timeout, description=name)
    return cancelled, finish


def leading_engine(store, clock, registry, **options):
    options.setdefault("lease_ttl", LONG_LEASE)
    engine = Engine(registry, store, clock=clock, **options)
    engine.start()
    engine.keep_lease()
    engine.step()
    wait_for(lambda: engine.leader, what="the engine to take the lease")
    return engine


@pytest.fixture
def engines():
    started = []
    yield started
    for engine in started:
        engine.stop(grace=1)


# 1 ---------------------------------------------------------------------------------


def test_every_finished_job_leaves_running_even_while_the_loop_records_others(
    registry, store, clock, engines
):
    gates = {name: gated_job(registry, name)[0] for name in ("c", "b", "a")}
    engine = leading_engine(store, clock, registry)
    engines.append(engine)
    submit = engine.writer.submit

    def slow_submit(record):  # the bookkeeping of a big burst takes a while
        time.sleep(0.02)
        submit(record)

    engine.writer.submit = slow_submit
    for name in ("c", "b", "a"):
        engine.run_now(name)
    gates["c"].set()
    time.sleep(0.01)
    gates["b"].set()  # finishes while the loop records c
    time.sleep(0.2)
    gates["a"].set()
    wait_for(
        lambda: all(engine.job(n)["status"] == "idle" for n in "abc"),
        what="every job to be idle once its body returned",
    )
    assert engine.run_now("a")["status"] == "running"


# 2 ---------------------------------------------------------------------------------


def test_a_run_nows_timeout_is_watched(registry, store, clock, engines):
    cancelled, finish = hanging_job(registry, "probe", timeout="1s")
    engine = leading_engine(store, clock, registry)
    engines.append(engine)
    engine.run_now("probe")
    clock.advance(1.0)  # its timeout passes; nothing else is due
    wait_for(lambda: engine.job("probe")["stuck"], what="the run to be flagged stuck")
    assert cancelled.wait(2), "the body was never asked to stop"
    finish.set()
    wait_for(lambda: engine.job("probe")["last_outcome"] == "timed out", what="timed out")


def test_a_queued_runs_timeout_is_watched(registry, store, db_path, clock, engines):
    cancelled, finish = hanging_job(registry, "probe", timeout="1s")
    leader = leading_engine(Store(db_path), clock, registry)
    follower = Engine(registry, Store(db_path), clock=clock, lease_ttl=LONG_LEASE)
    follower.start()
    engines.extend([leader, follower])
    wait_for(lambda: follower.scheduler_info()["running"], what="the follower to see a scheduler")
    follower.run_now("probe")  # queued for the leader, which sees it through the file
    wait_for(lambda: leader.job("probe")["status"] == "running", what="the queued run")
    clock.advance(1.0)
    wait_for(lambda: leader.job("probe")["stuck"], what="the queued run to be flagged stuck")
    assert cancelled.wait(2)
    finish.set()


# 3 ---------------------------------------------------------------------------------


def test_a_control_racing_a_due_slot_runs_it_once_and_keeps_everyones_history(
    registry, store, clock, engines
):
    slots = []
    registry.add(
        lambda ctx: slots.append(ctx.slot),
        name="tick",
        category="t",
        interval="1m",
        description="A job.",
    )
    registry.add(lambda ctx: None, name="other", category="t", interval="1m", description="A job.")
    engine = leading_engine(store, clock, registry)
    engines.append(engine)
    start = engine.started_at
    clock.advance(59.999)
    engine.step()
    save = engine.store.save_control

    def save_then_the_slot_falls_due(*args, **kwargs):
        result = save(*args, **kwargs)
        clock.advance(0.002)  # the slot falls due before the control is applied
        wait_for(lambda: slots, what="the slot to run")
        return result

    engine.store.save_control = save_then_the_slot_falls_due
    engine.set_interval("tick", "1m", user="ann")  # "Save" with the interval unchanged
    engine.store.save_control = save
    clock.advance(60)  # the next slot: ``other`` runs in the same round as ``tick``
    engine.step()
    assert engine.wait_idle(3)
    assert engine.writer.flush(5)
    assert [s - start for s in slots] == [60.0, 120.0]
    assert sorted(r["slot"] - start for r in store.runs("tick")) == [60.0, 120.0]
    assert sorted(r["slot"] - start for r in store.runs("other")) == [60.0, 120.0]


# 4 ---------------------------------------------------------------------------------


def test_a_remote_control_never_overrides_a_newer_local_one(
    registry, store, db_path, clock, engines
):
    registry.add(lambda ctx: None, name="zones", category="t", interval="1m", description="A job.")
    leader = leading_engine(Store(db_path), clock, registry)
    follower = Engine(registry, Store(db_path), clock=clock, lease_ttl=LONG_LEASE)
    follower.start()
    engines.extend([leader, follower])
    read, raced = leader.store.changes_since, []

    def read_then_a_local_control_commits(*args, **kwargs):
        result = read(*args, **kwargs)
        if not raced and "zones" in _jobs_in(result):
            raced.append(True)
            leader.resume("zones", user="bob")  # saved after the pause that was read
        return result

    leader.store.changes_since = read_then_a_local_control_commits
    follower.pause("zones", user="alice")
    wait_for(lambda: raced, what="the leader to read the pause")
    leader.sync()
    saved = Store(db_path)
    try:
        setting = saved.load_settings()["zones"]
        assert getattr(setting, "paused", None) is False or setting == {
            "interval": None,
            "paused": False,
        }
    finally:
        saved.close()
    assert leader.job("zones")["paused"] is False
    follower.sync()
    assert follower.job("zones")["paused"] is False


def _jobs_in(result):
    """The jobs whose settings a read of the changes found: (newest, settings, live)."""
    return [getattr(row, "job", None) or row["job"] for row in result[1]]


# 5 ---------------------------------------------------------------------------------


def test_a_scheduler_that_lost_its_lease_starts_nothing(registry, store, db_path, clock, engines):
    gate, ran = gated_job(registry, "job", interval="10s")
    gate.set()
    old_store = Store(db_path)
    old = leading_engine(old_store, clock, registry, lease_ttl=5.0, owner="old")
    engines.append(old)

    def disk_stuck(*args, **kwargs):  # a long database lock: renewals fail
        raise StoreError("The database is locked.")

    old_store.renew_lease = disk_stuck
    new = Engine(registry, Store(db_path), clock=clock, lease_ttl=5.0, owner="new")
    new.start()
    engines.append(new)
    clock.advance(6)  # the old lease ran out; the new scheduler takes over
    new.keep_lease()
    assert new.leader
    runs_before = len(ran)
    try:
        old.run_now("job")  # a Run Now sent to the old one: run by the new one, once
    except NotLeaderError:
        pass
    clock.advance(10)  # the next slot: only the new scheduler starts it
    old.step()
    new.keep_lease()
    assert new.wait_idle(3) and old.wait_idle(3)
    wait_for(lambda: len(ran) > runs_before, what="the slot to run")
    new.sync()
    assert new.wait_idle(3)
    for engine in (old, new):
        engine.writer.flush()
    history = new.store.runs("job", 100)
    owners = {r["owner"] for r in history if r["started_at"] > new.started_at}
    assert owners <= {"new"}, history
    assert len({(r["slot"], r["trigger"], r["started_at"]) for r in history}) == len(history)


def test_a_queued_run_is_carried_out_once(registry, store, clock, engines):
    ran = []
    registry.add(
        lambda ctx: ran.append(ctx.trigger),
        name="job",
        category="t",
        interval="1h",
        description="A job.",
    )
    engine = leading_engine(store, clock, registry)
    engines.append(engine)
    store.add_command("job", "run", user="ann", at=clock.now(), origin="elsewhere")
    command = store.pending_commands()[0]
    command_id = command.id if hasattr(command, "id") else command["id"]
    outcomes = []
    for _ in range(2):  # delivered twice (two rounds, or two processes)
        try:
            engine.run_now("job", user="ann", command_id=command_id)
            outcomes.append("started")
        except Exception as exc:
            outcomes.append(type(exc).__name__)
        engine.wait_idle(2)  # (the keeper may be carrying the command out meanwhile)
    wait_for(lambda: engine.wait_idle(0.5), what="the runs to end")
    engine.sync()
    assert engine.wait_idle(2)
    assert ran == ["manual"], outcomes


# 6 ---------------------------------------------------------------------------------


def test_a_queued_run_whose_recording_failed_is_tried_again(
    registry, store, db_path, clock, engines
):
    ran = []
    registry.add(
        lambda ctx: ran.append(ctx.user),
        name="job",
        category="t",
        interval="1h",
        description="A job.",
    )
    leader_store = Store(db_path)
    leader = leading_engine(leader_store, clock, registry)
    follower = Engine(registry, Store(db_path), clock=clock, lease_ttl=LONG_LEASE, run_jobs=False)
    follower.start()
    engines.extend([leader, follower])
    failed = fail_once(leader_store, "record_manual_run")
    leader.writer.flush()  # the start-up's own writes are all in and seen
    leader.sync()
    # A web-only node: nothing else is written after the failure that could wake
    # the scheduler into looking at the queue again.
    wait_for(lambda: follower.scheduler_info()["running"], what="the follower to see a scheduler")
    follower.run_now("job", user="ann")  # the user got 202
    wait_for(lambda: ran == ["ann"], timeout=4, what="the queued run to be tried again")
    assert failed


def test_a_queued_run_refused_as_busy_says_so_in_the_audit_trail(
    registry, store, db_path, clock, engines
):
    gate, _ = gated_job(registry, "job")
    leader = leading_engine(Store(db_path), clock, registry)
    engines.append(leader)
    leader.run_now("job")
    other = Store(db_path)
    other.add_command("job", "run", user="ann", at=clock.now(), origin="elsewhere")
    leader.sync()
    wait_for(lambda: not other.pending_commands(), what="the command to leave the queue")
    gate.set()
    audit = [(a["user"], a["action"]) for a in other.audit_trail("job")]
    assert ("ann", "run refused") in audit, audit
    other.close()


# 7 ---------------------------------------------------------------------------------


def test_controls_are_refused_once_shutdown_begins(registry, store, clock):
    gate, _ = gated_job(registry, "slow")
    registry.add(lambda ctx: None, name="quick", category="t", interval="1h", description="A job.")
    engine = leading_engine(store, clock, registry)
    engine.run_now("slow")
    stopper = threading.Thread(target=engine.stop, kwargs={"grace": 2})
    stopper.start()
    time.sleep(0.1)  # stop() now waits for ``slow``
    refused = []
    for control in (lambda: engine.run_now("quick"), lambda: engine.pause("quick")):
        try:
            control()
        except Exception as exc:
            refused.append(type(exc).__name__)
    gate.set()
    stopper.join(5)
    assert refused == ["ShuttingDownError", "ShuttingDownError"]
    assert "quick" not in store.load_settings()
    assert store.runs("quick") == []


# 8 ---------------------------------------------------------------------------------


def test_records_made_during_a_fault_at_shutdown_are_written_at_the_next_start(
    registry, db_path, clock
):
    registry.add(lambda ctx: "done", name="job", category="t", interval="1h", description="A job.")
    store = Store(db_path, busy_timeout=0.05)
    store.migrate()
    engine = leading_engine(store, clock, registry)
    assert engine.writer.flush()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    engine.run_now("job")  # recorded as started; its finish waits for the writer
    blocker.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        assert engine.wait_idle(2)
        engine.stop(grace=0)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.close()
    clock.advance(LONG_LEASE + 1)  # its lease, never released (the disk was locked), ran out
    again = Store(db_path)
    successor = leading_engine(again, clock, registry)
    try:
        runs = again.runs("job")
        assert [(r["outcome"], r["result"]) for r in runs] == [("ok", "done")]
    finally:
        successor.stop(grace=0)
        again.close()


# 9 ---------------------------------------------------------------------------------


def test_a_failed_takeover_is_tried_again_soon_and_not_shown_as_running(
    registry, store, clock, engines
):
    registry.add(lambda ctx: None, name="job", category="t", interval="1h", description="A job.")
    failed = fail_once(store, "mark_interrupted_runs")
    engine = Engine(registry, store, clock=clock, lease_ttl=30.0)
    engines.append(engine)
    engine.start()
    wait_for(lambda: failed, what="the first takeover")
    if not engine.leader:
        assert engine.scheduler_info()["running"] is False
    wait_for(lambda: engine.leader, timeout=3, what="the takeover to be tried again")
    assert engine.scheduler_info()["running"] is True


# 11 --------------------------------------------------------------------------------


def test_the_last_scheduler_status_published_is_the_newest(registry, store, clock, engines):
    registry.add(lambda ctx: None, name="job", category="t", interval="1h", description="A job.")
    engine = leading_engine(store, clock, registry)
    engines.append(engine)
    reads = threading.local()

    class SlowFirstRead(type(store)):
        @property
        def write_failure(self):
            value = self.__dict__["write_failure"]
            if getattr(reads, "slow", False):
                time.sleep(0.05)  # read, then the thread is preempted
            return value

        @write_failure.setter
        def write_failure(self, value):
            self.__dict__["write_failure"] = value

    store.__class__ = SlowFirstRead
    with engine.subscribe() as subscription:

        def fails():
            reads.slow = True
            store.write_failure = "The disk is full."
            engine.writer._on_status()

        def clears():
            time.sleep(0.01)
            store.write_failure = None
            engine.writer._on_status()

        threads = [threading.Thread(target=fails), threading.Thread(target=clears)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        events = [e for e in subscription.get(timeout=0.5) if e.kind == "scheduler"]
    assert engine.scheduler_info()["persistence_ok"] is True
    published = events[-1].data["persistence_ok"] if events else True
    assert published is True, "the page was left saying that saving fails"


# 12 --------------------------------------------------------------------------------


def test_a_job_and_its_runs_agree_while_the_finish_waits_to_be_written(
    registry, store, db_path, clock, engines
):
    gate, _ = gated_job(registry, "job")
    store = Store(db_path, busy_timeout=0.05)
    engine = leading_engine(store, clock, registry)
    engines.append(engine)
    assert engine.writer.flush()  # (its store gives up on a lock after 0.05 s)
    engine.run_now("job")
    assert engine.writer.flush()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the finish cannot be written yet
    try:
        gate.set()
        wait_for(lambda: engine.job("job")["status"] == "idle", what="the run to end")
        assert [r["outcome"] for r in engine.runs("job")] == ["ok"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert engine.writer.flush(5)
    assert [r["outcome"] for r in engine.runs("job")] == ["ok"]


def test_run_now_while_running_is_refused(registry, store, clock, engines):
    gate, _ = gated_job(registry, "job")
    engine = leading_engine(store, clock, registry)
    engines.append(engine)
    engine.run_now("job")
    with pytest.raises(JobBusyError):
        engine.run_now("job")
    gate.set()


def test_a_run_now_the_loop_refuses_after_it_was_recorded_leaves_an_audit_line_only(
    registry, store, clock, engines
):
    """The page's view said the job was free, but a run had just started: the loop
    refuses the claim, and the record becomes an audit line saying why."""
    gate, _ = gated_job(registry, "job")
    engine = leading_engine(store, clock, registry)
    engines.append(engine)
    free = engine.job("job")
    engine.run_now("job")
    view = engine.job
    engine.job = lambda name: dict(free)  # a view taken a moment before that run
    try:
        with pytest.raises(JobBusyError):
            engine.run_now("job", user="bob")
    finally:
        engine.job = view
        gate.set()
    assert [r["trigger"] for r in store.runs("job")] == ["manual"]
    audit = [(a["user"], a["action"]) for a in store.audit_trail("job")]
    assert audit[0] == ("bob", "run refused"), audit
    assert engine.wait_idle(2)
    assert engine.job("job")["run_count"] == 1
