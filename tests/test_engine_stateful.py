"""A stateful property test of the engine: hypothesis draws sequences of due slots,
finishing runs, Run Now, pause, resume, interval and reset (from the scheduler and
from a second engine on the same file), what the other engine saved reaching the
scheduler, database locks and handing the lease over to the standby, with the real
loop, keeper and writer threads of both engines, and checks after every step:

- no (job, slot) started twice, and every run ever started is recorded once;
- every run whose body returned is recorded as ended, exactly once;
- a job shows ``running`` exactly while one of its bodies runs (within a moment);
- what the scheduler shows equals what is saved, for every job;
- every acknowledged control is saved, and one refused (the database locked)
  changed nothing.

``make test`` runs a few dozen short sequences; for a longer hunt:
``JOBS_STATEFUL_EXAMPLES=2000 .venv/bin/pytest tests/test_engine_stateful.py``.
"""

import os
import sqlite3
import tempfile
import threading

from hypothesis import HealthCheck, settings
from hypothesis import strategies as strategy
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_engine_races import wait_for

from scheduler import Engine, JobBusyError, JobRegistry, ManualClock, Store, StoreError
from scheduler.clock import to_iso
from scheduler.intervals import parse_interval

JOBS = ("a", "b", "c")
INTERVALS = ("30s", "1m", "5m")
DEFAULT = "1m"
LEASE = 400 * 86400.0
EXAMPLES = int(os.environ.get("JOBS_STATEFUL_EXAMPLES", "25"))

jobs = strategy.sampled_from(JOBS)


class EngineMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="jobs-stateful-")
        self.path = os.path.join(self.folder, "jobs.db")
        Store(self.path).migrate()
        self.clock = ManualClock()
        self.lock = threading.Lock()
        self.bodies = []  # [job, slot, trigger, gate, returned] of every body started
        self.registry = JobRegistry()
        for name in JOBS:
            self.registry.add(
                self._body, name=name, category="t", interval=DEFAULT, description=name
            )
        self.stores, self.engines = [], []
        self.leader = self._engine("first")
        self.leader.keep_lease()
        self.leader.step()
        wait_for(lambda: self.leader.leader, what="the first engine to lead")
        self.standby = self._engine("second")
        self.expected = {name: (False, parse_interval(DEFAULT)) for name in JOBS}
        self.generation = 0

    def _engine(self, owner):
        store = Store(self.path, busy_timeout=0.05)
        engine = Engine(self.registry, store, clock=self.clock, lease_ttl=LEASE, owner=owner)
        engine.start()
        self.stores.append(store)
        self.engines.append(engine)
        return engine

    def _body(self, ctx):
        gate = threading.Event()
        body = [ctx.job, ctx.slot, ctx.trigger, gate, False]
        with self.lock:
            self.bodies.append(body)
        gate.wait(20)
        body[4] = True

    def _running(self, name):
        with self.lock:
            return [b for b in self.bodies if b[0] == name and not b[3].is_set()]

    def _quiet(self):
        """Let the scheduler take in everything so far: the loop, then the writer."""
        for engine in (self.leader, self.standby):
            engine.step()
        assert self.leader.writer.flush(5)

    # -- rules ------------------------------------------------------------------------

    @rule(seconds=strategy.sampled_from([0.5, 1, 29, 30, 31, 60, 300]))
    def time_passes(self, seconds):
        self.clock.advance(seconds)
        self._quiet()

    @rule(name=jobs)
    def a_run_ends(self, name):
        running = self._running(name)
        if not running:
            return
        running[0][3].set()
        wait_for(lambda: running[0][4], what="the body to return")
        # No job left running more than a moment after its body returned.
        wait_for(
            lambda: self.leader.job(name)["status"] != "running" or self._running(name),
            timeout=2,
            what=f"{name} to stop showing running once its body returned",
        )

    @rule(name=jobs)
    def run_now(self, name):
        before = len(self._running(name))
        try:
            job = self.leader.run_now(name, user="ann")
        except JobBusyError:
            assert before, f"{name} was refused as busy while nothing ran"
            return
        assert job["status"] == "running"
        wait_for(lambda: self._running(name), what="the Run Now body to start")

    @rule(name=jobs, remote=strategy.booleans(), paused=strategy.booleans())
    def pause_or_resume(self, name, remote, paused):
        engine = self.standby if remote else self.leader
        job = (engine.pause if paused else engine.resume)(name, user="ann")
        assert job["paused"] is paused
        self.expected[name] = (paused, self.expected[name][1])

    @rule(name=jobs, remote=strategy.booleans(), interval=strategy.sampled_from(INTERVALS))
    def set_interval(self, name, remote, interval):
        engine = self.standby if remote else self.leader
        job = engine.set_interval(name, interval, user="ann")
        assert job["interval_seconds"] == parse_interval(interval)
        self.expected[name] = (self.expected[name][0], parse_interval(interval))

    @rule(name=jobs, remote=strategy.booleans())
    def reset(self, name, remote):
        engine = self.standby if remote else self.leader
        engine.reset_interval(name, user="ann")
        self.expected[name] = (self.expected[name][0], parse_interval(DEFAULT))

    @rule()
    def the_scheduler_takes_in_what_the_other_saved(self):
        self.standby.writer.flush()
        self.leader.sync()
        self.standby.sync()

    @rule(name=jobs)
    def a_control_meets_a_locked_database(self, name):
        blocker = sqlite3.connect(self.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            try:
                self.leader.pause(name, user="ann")
            except StoreError:
                pass
            else:
                raise AssertionError("a pause was acknowledged while the file was locked")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

    @precondition(lambda self: self.generation < 2)
    @rule()
    def the_lease_goes_to_the_standby(self):
        """The scheduler stops (its runs are cut off); the standby takes over at once."""
        old = self.leader
        old.stop(grace=0)
        with self.lock:
            for body in self.bodies:
                body[3].set()  # the bodies of a stopped process end with it
        standby = self.standby

        def took_over():
            standby.keep_lease()
            standby.step()
            return standby.leader

        wait_for(took_over, what="the standby to take over")
        self.leader, self.standby = self.standby, self._engine(f"standby-{self.generation}")
        self.generation += 1
        self.the_scheduler_takes_in_what_the_other_saved()

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def every_run_is_recorded_once_and_no_slot_twice(self):
        self._quiet()
        rows = _query(self.path, "SELECT run_id, job, slot, outcome FROM runs")
        assert len({r[0] for r in rows}) == len(rows)
        slots = [(job, slot) for _, job, slot, _ in rows if slot is not None]
        assert len(slots) == len(set(slots)), "a slot was started twice"
        with self.lock:
            started = [(b[0], b[1]) for b in self.bodies if b[1] is not None]
        assert len(started) == len(set(started)), "a slot's body ran twice"
        assert len(rows) == len(self.bodies), (len(rows), len(self.bodies))

    @invariant()
    def a_job_shows_running_exactly_while_its_body_runs(self):
        for name in JOBS:
            wait_for(
                lambda name=name: (
                    (self.leader.job(name)["status"] == "running") == bool(self._running(name))
                ),
                timeout=2,
                what=f"{name} to show running exactly while its body runs",
            )

    @invariant()
    def what_is_shown_is_what_is_saved(self):
        # A control saved by the standby reaches the scheduler within a moment.
        wait_for(self._shown_matches_acknowledged, timeout=2, what="the controls to arrive")
        self._quiet()
        saved = _query(self.path, "SELECT job, paused, interval_seconds FROM job_settings")
        saved = {job: (bool(paused), seconds) for job, paused, seconds in saved}
        states = {
            row[0]: row[1:]
            for row in _query(self.path, "SELECT job, last_outcome, next_run FROM job_state")
        }
        default = parse_interval(DEFAULT)
        for name in JOBS:
            job = self.leader.job(name)
            paused, interval = saved.get(name, (False, None))
            assert (paused, interval or default) == self.expected[name], "a control was lost"
            outcome, next_run = states.get(name, (None, None))
            if job["status"] != "running":
                assert job["last_outcome"] == outcome, (name, job, outcome)
            assert job["next_run"] == (None if paused else to_iso(next_run)), (name, job)

    def _shown_matches_acknowledged(self):
        return all(
            (job["paused"], job["interval_seconds"]) == self.expected[job["name"]]
            for job in (self.leader.job(name) for name in JOBS)
        )

    @invariant()
    def every_ended_run_is_recorded_as_ended(self):
        def recorded():
            assert self.leader.writer.flush(5)
            rows = _query(self.path, "SELECT count(*) FROM runs WHERE outcome = 'running'")
            with self.lock:
                still_running = sum(1 for b in self.bodies if not b[4])
            return rows[0][0] == still_running

        wait_for(recorded, timeout=2, what="every run that ended to be recorded as ended")

    def teardown(self):
        with self.lock:
            for body in self.bodies:
                body[3].set()
        for engine in self.engines:
            engine.stop(grace=1)
        for store in self.stores:
            store.close()


def _query(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


EngineMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_engine_under_random_interleavings = EngineMachine.TestCase
