"""The engine: one loop that starts jobs on their slots, and the controls the page calls.

Threads (all native, see ``native``):

- the loop (``jobs-loop``) owns the timetable.  Each ``step()`` applies the
  changes that controls queued, dispatches the due jobs to the executor, flags
  runs past their timeout, and says how long to sleep; a control wakes it at once.
- the keeper (``jobs-keeper``) holds or waits for the scheduler lease in the
  database, so that of all the processes sharing the file exactly one runs jobs,
  and takes in what the other processes commit: it wakes when the database file
  changes (``filewatch``) or when the lease is due for renewal, never on a tick.
- workers (``jobs-worker``) run job bodies; the writer (``jobs-writer``) records them.

Controls may be called from any thread or greenlet; they validate, persist the
change (so an acknowledged change survives a crash), update the state, publish
an event and return the job's new state.
"""

import itertools
import logging
import os
import socket
import time
import traceback
import uuid
from functools import partial

from . import state as st
from .clock import SystemClock, to_iso
from .context import RunContext
from .errors import JobBusyError, NotLeaderError, StoreError, UnknownJobError
from .events import EventBus
from .executor import NativeExecutor
from .filewatch import FileWatch
from .intervals import format_interval, parse_interval
from .native import Empty, Lock, SimpleQueue, start_thread
from .native import sleep as native_sleep
from .store import RunWriter
from .timetable import Timetable

log = logging.getLogger(__name__)

DEFAULT_LEASE_TTL = 30.0
DEFAULT_STAGGER = 0.25


class Engine:
    """Runs the jobs of a registry on schedule and answers the page's controls."""

    def __init__(
        self,
        registry,
        store,
        *,
        clock=None,
        settings=None,
        run_jobs=True,
        owner=None,
        lease_ttl=DEFAULT_LEASE_TTL,
        max_workers=32,
        stagger=DEFAULT_STAGGER,
        bus=None,
    ):
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be a positive number of seconds.")
        self.registry = registry
        self.store = store
        self.clock = clock or SystemClock()
        self.settings = dict(settings or {})
        self.run_jobs = run_jobs
        self.owner = owner or f"{_this_process()}:{uuid.uuid4().hex[:8]}"
        self.lease_ttl = float(lease_ttl)
        self.stagger = stagger
        # A burst of every job starting and finishing must not force a resync.
        self.bus = bus or EventBus(max_pending=max(1000, 4 * len(registry)))
        self.writer = RunWriter(store, on_status=self._publish_scheduler_if_changed)
        self.executor = NativeExecutor(max_workers=max_workers, on_drained=self._executor_drained)
        self._states = {d.name: st.JobState(d, interval=d.interval) for d in registry}
        self._timetable = Timetable()
        self._lock = Lock()  # guards job states; never held across I/O
        self._control_lock = Lock()  # one control at a time: persist, then apply
        self._commands = SimpleQueue()
        self._wake = SimpleQueue()
        self.leader = False
        self._holding = False
        self._lease_valid_until = None
        self._lease_info = None
        self._renewed = False  # the latest renewal of a held lease worked
        self._reported_scheduler = None  # the scheduler info streams were last sent
        # Seconds between looks at what other processes changed where the database
        # file cannot be watched; with a watch a change is taken in at once.
        self.sync_interval = 0.5
        self._watch = None
        self._keeper_wake = SimpleQueue()  # stop() wakes a keeper that polls
        self._data_version = None
        self._synced_seq = None
        self.started_at = None
        self._stopping = False
        self._stopped = False
        self._threads_started = False
        self._lease_lock = Lock()  # a renewal never lands after the release
        self._live_lock = Lock()
        self._emit_lock = Lock()
        self._capture_stamps = itertools.count()
        self._emitted_stamps = {}  # job -> stamp of the newest state published
        self._live_pending = {}  # job -> latest raw state not yet written for others
        self._live_queued = False  # a _write_live is queued and has not started
        self._exited = SimpleQueue()
        self._thread_count = 0
        self.fault_backoff = 1.0  # seconds the loop waits after a failed step
        # While the loop runs it does the bookkeeping of runs (records, events) once
        # every due job has started: nothing stands between a slot and a job's start.
        self.bookkeeping_hold = 0.05  # the longest a burst may hold bookkeeping back
        self._deferring = False  # True while the loop thread runs
        self._finished = SimpleQueue()  # runs workers finished, for the loop to record
        self._finish_signalled = False
        self._dispatched = []  # (state, run or None, next slot) not yet recorded
        self._hold_until = None  # monotonic time by which held-back bookkeeping is done
        self._awaiting_drain = False
        self._timed = set()  # jobs whose current run has a timeout to watch

    # -- lifecycle ---------------------------------------------------------------

    def load(self):
        """Read overrides and last runs from the database into the job states."""
        settings = self.store.load_settings()
        rows = self.store.load_job_states()
        recent = self.store.recent_runs(self.registry.names(), st.RECENT_RUNS)
        with self._lock:
            for name, state in self._states.items():
                override = settings.get(name, {})
                state.paused = bool(override.get("paused"))
                if override.get("interval"):
                    state.interval = override["interval"]
                row = rows.get(name)
                if row:
                    state.last_started_at = row["last_started_at"]
                    state.last_finished_at = row["last_finished_at"]
                    state.last_duration = row["last_duration"]
                    state.last_outcome = row["last_outcome"]
                    state.last_error = row["last_error"]
                    state.last_traceback = row["last_traceback"]
                    state.last_slot = row["last_slot"]
                    state.next_run = None if state.paused else row["next_run"]
                state.recent = [st.recent_run(*row) for row in recent.get(name, [])]
        return rows

    def start(self, threads=True):
        """Load state and start the threads: the lease keeper always, the loop if
        this process may run jobs.  With ``threads=False`` nothing runs by itself:
        tests then drive ``keep_lease()`` and ``step()`` by hand."""
        if self._threads_started or self.started_at is not None:
            return
        self.started_at = self.clock.now()
        self.load()
        if not threads:
            return
        self._threads_started = True
        self.writer.start()
        self._watch = FileWatch.open(self.store.path)
        self._spawn(self._keep_forever, name="jobs-keeper")
        if self.run_jobs:
            self._deferring = True
            self._spawn(self._loop_forever, name="jobs-loop")

    def stop(self, grace=10.0):
        """Stop scheduling, give running jobs ``grace`` seconds, record the rest as
        interrupted, give up the lease and end every event stream."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True
        self.bus.close_all()  # live streams end now, so browsers reconnect elsewhere
        self._wake.put(None)
        self._keeper_wake.put(None)
        if self._watch is not None:
            self._watch.wake()
        if not self.wait_idle(grace):
            self._interrupt_running()
        self._deferring = False  # from now on a finishing run records itself
        self._record_and_publish(force=True)
        # Every record on disk before the lease goes: a successor must not read a
        # stale next slot or take a finished run for an interrupted one.
        self.writer.stop()
        with self._lease_lock:
            if self._holding:
                try:
                    self.store.release_lease(self.owner, self.clock.now())
                except StoreError as exc:
                    log.error("Could not release the scheduler lease: %s", exc)
            self._holding = False
        self._set_leader(False)
        self.executor.shutdown()
        self.bus.close_all()
        self._join_threads(timeout=5.0)
        if self._watch is not None:
            self._watch.close()

    def _spawn(self, target, name):
        """Start one of the engine's own threads; ``stop()`` waits for it to end."""

        def run():
            try:
                target()
            finally:
                self._exited.put(name)

        self._thread_count += 1
        start_thread(run, name=name)

    def _join_threads(self, timeout):
        deadline = time.monotonic() + timeout
        while self._thread_count:
            try:
                self._exited.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                log.warning("%d scheduler threads did not end in time", self._thread_count)
                return
            self._thread_count -= 1

    def wait_idle(self, timeout=5.0):
        """Wait (on the real clock) until no job is running; True if none is."""
        deadline = time.monotonic() + timeout
        while True:
            self._record_and_publish(force=True)  # the loop may have stopped
            with self._lock:
                busy = any(
                    s.current is not None and not s.current.mirrored for s in self._states.values()
                )
            if not busy:
                return True
            if time.monotonic() >= deadline:
                return False
            native_sleep(0.005)

    def _interrupt_running(self):
        now = self.clock.now()
        events = []
        with self._lock:
            for state in self._states.values():
                run = state.current
                if run is None or run.mirrored:
                    continue
                run.cancelled = True
                run.superseded = True
                self._close_run_locked(
                    state,
                    run,
                    st.INTERRUPTED,
                    now,
                    error="Interrupted: the server stopped during this run.",
                )
                events.append(self._capture(state))
        self._emit(events)

    # -- the loop ----------------------------------------------------------------

    def _loop_forever(self):
        while not self._stopping:
            try:
                delay = self.step()
            except Exception:  # supervise: a fault in one step must not end scheduling
                log.exception("The scheduler loop failed a step; it carries on")
                delay = self.fault_backoff
            try:
                self._wake.get(timeout=delay)
                while True:
                    self._wake.get_nowait()
            except Empty:
                pass

    def step(self):
        """Do one round of the loop's work; return seconds until it has more to do
        (None: nothing scheduled, wait for a control)."""
        self._apply_commands()
        if self.leader and not self._stopping:
            if self._lease_valid():
                self._dispatch_due(self.clock.now())
            else:
                log.warning("Lost the scheduler lease; not starting jobs until it is back")
                self._set_leader(False)
        held = self._record_and_publish()
        if held is None:
            self._timetable.refresh()
        next_deadline = self._flag_stuck_runs()
        # Measured after the bookkeeping above, which can take a while after a burst.
        delays = [] if held is None else [held]
        next_due = self._timetable.next_due() if self.leader else None
        if next_due is not None:
            delays.append(max(0.0, next_due - self.clock.now()))
        if next_deadline is not None:
            delays.append(max(0.0, next_deadline - self.clock.monotonic()))
        return min(delays, default=None)

    def _apply_commands(self):
        while True:
            try:
                command, name = self._commands.get_nowait()
            except Empty:
                return
            if command == "lead":
                self._take_over()
            elif command == "follow":
                self._set_leader(False)
            elif command == "sync" and self.leader:
                with self._lock:
                    state = self._states[name]
                    paused, interval, next_run = state.paused, state.interval, state.next_run
                if paused or next_run is None:
                    self._timetable.remove(name)
                else:
                    self._timetable.put(name, interval, next_run)

    def _take_over(self):
        """Become the scheduler: close runs a dead holder left open, reload state
        and put every active job on the timetable."""
        if self.leader:
            return  # already leading (a second request from the keeper)
        now = self.clock.now()
        self.store.mark_interrupted_runs(now, except_owner=self.owner)
        rows = self.load()
        overdue = []
        with self._lock:
            self._timetable.clear()
            for name, state in self._states.items():
                if state.current is not None and state.current.mirrored:
                    state.current, state.stuck = None, False  # that process is gone
                if state.paused:
                    state.next_run = None
                    continue
                persisted = rows.get(name, {}).get("next_run")
                if persisted is None:
                    # Never scheduled: one interval from now, and kept, so that a
                    # restart before then does not push the first run further away.
                    state.next_run = now + state.interval
                    self.writer.submit(partial(_save_next_run, self.store, name, state.next_run))
                elif persisted <= now:
                    overdue.append((persisted, name))
                    continue
                else:
                    state.next_run = persisted  # not yet due: keep its slot
                self._timetable.put(name, state.interval, state.next_run)
            # Jobs that fell due while no scheduler ran: soon, most overdue first,
            # spread out so a restart does not start them all at once.
            for index, (_, name) in enumerate(sorted(overdue)):
                state = self._states[name]
                state.next_run = now + self.stagger * (index + 1)
                self._timetable.put(name, state.interval, state.next_run)
            snapshot = [self._capture(s) for s in self._states.values()]
        self.leader = True
        self._emit(snapshot)
        self._publish_scheduler()
        log.info("This process now runs the scheduler (%s)", self.owner)

    def _set_leader(self, leader):
        if self.leader == leader:
            return
        self.leader = leader
        if not leader:
            self._timetable.clear()
        self._publish_scheduler()

    def _dispatch_due(self, now):
        """Hand every due job to the executor; record and publish them afterwards."""
        due = self._timetable.take_due(now)
        if not due:
            return
        dispatched, tasks = [], []
        with self._lock:
            for name, slot, next_run in due:
                state = self._states[name]
                state.next_run = next_run
                run = self._start_run_locked(state, st.SCHEDULED, None, slot, now)
                if run is not None:
                    if not self._deferring:
                        # No loop orders the records: the start goes before the finish.
                        self.writer.submit(
                            partial(_record_starts, self.store, self.owner, [(run, next_run)])
                        )
                        run.recorded = True
                    tasks.append(partial(self._execute, run))
                dispatched.append((state, run, next_run))
            self.executor.submit_all(tasks)
            self._dispatched.extend(dispatched)
            if self._hold_until is None:
                self._hold_until = time.monotonic() + self.bookkeeping_hold

    def _record_and_publish(self, force=False):
        """Record the runs started and finished since the last call and publish the
        jobs' new states, unless due jobs still wait for a worker (then return the
        seconds to wait at most; None when nothing is held back)."""
        if not self._dispatched and self._finished.empty():
            return None
        if not force and self._deferring and self.executor.pending():
            wait = (self._hold_until or 0.0) - time.monotonic()
            if wait > 0:
                self._awaiting_drain = True  # the executor wakes the loop when drained
                if self.executor.pending():  # (unless it drained just before that)
                    return wait
        self._awaiting_drain = False
        changed = {}
        with self._lock:
            self._hold_until = None
            dispatched, self._dispatched = self._dispatched, []
            starts = []
            for state, run, next_run in dispatched:
                changed[state.name] = state
                if run is None:
                    log.info("Skipped a slot of %s: its previous run is still going", state.name)
                    self.writer.submit(partial(_save_next_run, self.store, state.name, next_run))
                elif not run.recorded:
                    run.recorded = True
                    starts.append((run, next_run))
            if starts:  # queued before any finish of these runs below
                self.writer.submit(partial(_record_starts, self.store, self.owner, starts))
            self._finish_signalled = False  # a finish queued from now on wakes the loop again
            while True:
                try:
                    finished = self._finished.get_nowait()
                except Empty:
                    break
                state = self._finish_locked(*finished)
                if state is not None:
                    changed[state.name] = state
            events = [self._capture(state) for state in changed.values()]
        self._emit(events)
        return None

    def _executor_drained(self):
        """Called by a worker that took the last waiting task."""
        if self._awaiting_drain:
            self._awaiting_drain = False
            self._wake.put(None)

    def _flag_stuck_runs(self):
        """Mark runs past their timeout as stuck and ask them to stop; return the
        next deadline still to watch (monotonic), if any."""
        mono = self.clock.monotonic()
        next_deadline = None
        events = []
        with self._lock:
            for name in list(self._timed):  # not every job at every step
                state = self._states[name]
                run = state.current
                if run is None or run.deadline is None:
                    self._timed.discard(name)
                    continue
                if state.stuck:
                    continue
                if mono >= run.deadline:
                    state.stuck = True
                    run.cancelled = True
                    run.log.warning(
                        "Still running after its timeout of %s; asked to stop",
                        format_interval(int(state.definition.timeout)),
                    )
                    events.append(self._capture(state))
                elif next_deadline is None or run.deadline < next_deadline:
                    next_deadline = run.deadline
        self._emit(events)
        return next_deadline

    # -- runs ----------------------------------------------------------------------

    def _start_run_locked(self, state, trigger, user, slot, now):
        """Start a run of ``state``'s job unless one is executing within its timeout.
        A stuck run (past its timeout) is recorded as timed out and replaced."""
        current = state.current
        if current is not None:
            if not self._is_stuck(current):
                return None
            current.cancelled = True
            current.superseded = True
            timeout = format_interval(int(state.definition.timeout))
            self._close_run_locked(
                state,
                current,
                st.TIMED_OUT,
                now,
                error=f"Timed out: still running after {timeout}; replaced by a new run.",
            )
        definition = state.definition
        run = st.Run(
            job=state.name,
            trigger=trigger,
            started_at=now,
            user=user,
            slot=slot,
            deadline=(
                None if definition.timeout is None else self.clock.monotonic() + definition.timeout
            ),
        )
        state.current = run
        state.stuck = False
        if run.deadline is not None:
            self._timed.add(state.name)
        state.run_count += 1
        state.last_started_at = now
        if slot is not None:
            state.last_slot = slot
        return run

    def _is_stuck(self, run):
        return run.deadline is not None and self.clock.monotonic() >= run.deadline

    def _execute(self, run):
        """The body of a run, on a worker thread."""
        definition = self._states[run.job].definition
        context = RunContext(
            run, settings=self.settings, store=self.store, on_progress=self._on_progress
        )
        error = trace = result = None
        try:
            result = st.describe_result(definition.func(context))
            outcome = st.OK
        except BaseException as exc:  # record everything; a job never takes a worker down
            outcome = st.FAILED
            error = _error_message(exc)
            trace = traceback.format_exc()
        finished = (run, outcome, error, trace, result, self.clock.now(), self.clock.monotonic())
        if self._deferring:
            # The loop records it with the next bookkeeping: the worker is free at
            # once and never waits for the engine's lock.
            self._finished.put(finished)
            if not self._finish_signalled:
                self._finish_signalled = True
                self._wake.put(None)
            return
        with self._lock:
            state = self._finish_locked(*finished)
            events = [] if state is None else [self._capture(state)]
        self._emit(events)

    def _finish_locked(self, run, outcome, error, trace, result, now, mono):
        """Close a run that returned; return its job's state, or None if the run
        was already recorded as timed out or interrupted."""
        state = self._states[run.job]
        if run.superseded:
            # Already recorded (timed out or interrupted); keep what it logged since.
            self.writer.submit(partial(_record_log, self.store, run))
            return None
        if run.deadline is not None and mono >= run.deadline:
            timeout = format_interval(int(state.definition.timeout))
            note = f"Timed out: ran longer than its timeout of {timeout}."
            error = note if error is None else f"{note} {error}"
            outcome = st.TIMED_OUT
        run.result = result
        run.traceback = trace
        self._close_run_locked(state, run, outcome, now, error=error)
        return state

    def _close_run_locked(self, state, run, outcome, now, *, error=None):
        run.outcome = outcome
        run.finished_at = now
        run.error = error
        if state.current is run:
            state.current = None
            state.stuck = False
        state.last_finished_at = now
        state.last_duration = run.duration
        state.last_outcome = outcome
        state.last_error = error
        state.last_traceback = run.traceback
        state.remember(run)
        self.writer.submit(partial(_record_finish, self.store, run))

    def _on_progress(self, run, fraction, message):
        with self._lock:
            state = self._states[run.job]
            if state.current is not run:
                return
            run.progress = (fraction, message)
            event = self._capture(state)
        self._emit([event])

    # -- controls ------------------------------------------------------------------

    def run_now(self, name, user=None, *, command_id=None):
        """Start a run at once (allowed while paused); JobBusyError while one runs.

        The run and its audit line are on disk before it starts and before this
        returns, so an acknowledged run is never lost (StoreError: nothing started).
        In a process that does not hold the scheduler the request is queued in the
        database for the one that does, which starts it as soon as it sees it
        (``command_id``: that queued request, removed with the run's record)."""
        state = self._state(name)
        now = self.clock.now()
        if not self.leader:
            return self._forward_run_now(state, user, now)
        with self._lock:
            before = (state.run_count, state.last_started_at, state.stuck)
            run = self._start_run_locked(state, st.MANUAL, user, None, now)
            if run is None:
                raise JobBusyError(
                    f"{name} is already running (started {to_iso(state.last_started_at)}); "
                    "wait for it to finish."
                )
            next_run = state.next_run
        try:
            self.store.record_manual_run(run, self.owner, next_run, command_id=command_id)
        except StoreError:
            with self._lock:
                if state.current is run:  # as if it had never been asked for
                    state.current = None
                    state.run_count, state.last_started_at, state.stuck = before
            self._publish_scheduler_if_changed()
            raise
        run.recorded = True
        with self._lock:
            event = self._capture(state)
        self._emit([event])  # before the hand-over: the body then starts without waiting
        self.executor.submit(partial(self._execute, run))
        return event[0]

    def pause(self, name, user=None):
        """Stop scheduled runs of ``name`` (a run in progress finishes)."""
        return self._change(name, user, "pause", paused=True)

    def resume(self, name, user=None):
        """Schedule ``name`` again: one interval after its last run, or at once if
        that moment has passed."""
        return self._change(name, user, "resume", paused=False)

    def set_interval(self, name, interval, user=None):
        """Run ``name`` every ``interval`` (text such as '5m'); takes effect at once."""
        seconds = parse_interval(interval)
        return self._change(name, user, "interval", interval=seconds)

    def reset_interval(self, name, user=None):
        """Put ``name`` back on its default interval."""
        state = self._state(name)
        return self._change(name, user, "reset", interval=state.definition.interval)

    def _change(self, name, user, action, **changes):
        """Save and apply one control: ``paused`` or ``interval`` (seconds)."""
        state = self._state(name)
        default = state.definition.interval
        if "interval" in changes:
            seconds = changes.pop("interval")
            changes["interval_seconds"] = None if seconds == default else seconds
        with self._control_lock:
            now = self.clock.now()

            def plan(saved, new):
                # What is saved, not this process's copy, is what the control changes.
                was_paused, is_paused = saved["paused"], new["paused"]
                was_interval = saved["interval_seconds"] or default
                interval = new["interval_seconds"] or default
                with self._lock:
                    next_run = (
                        None
                        if is_paused
                        else self._next_run_after_change(
                            state, interval, now, was_paused=was_paused, was_interval=was_interval
                        )
                    )
                if action in ("pause", "resume"):
                    texts = (
                        "paused" if was_paused else "active",
                        "paused" if is_paused else "active",
                    )
                else:
                    texts = (format_interval(was_interval), format_interval(interval))
                return (next_run, *texts)

            # On disk first: if this raises, nothing has changed (and the status bar
            # says that saving fails).
            try:
                _, new, next_run = self.store.save_control(
                    name, plan, at=now, user=user, action=action, origin=self.owner, **changes
                )
            finally:
                self._publish_scheduler_if_changed()
            with self._lock:
                state.paused = new["paused"]
                state.interval = new["interval_seconds"] or default
                state.next_run = next_run
                event = self._capture(state)
            self._commands.put(("sync", name))
            self._wake.put(None)
        self._emit([event])
        return event[0]

    def _next_run_after_change(self, state, interval, now, *, was_paused, was_interval):
        """The next slot once a job runs every ``interval`` again (it was paused or
        ran every ``was_interval``): one interval after its last start, or now if
        that has passed; unchanged if nothing changed."""
        if not was_paused and interval == was_interval and state.next_run is not None:
            return state.next_run
        base = state.last_started_at
        if base is None:
            base = self.started_at if self.started_at is not None else now
        return max(now, base + interval)

    def _state(self, name):
        if not isinstance(name, str):
            raise UnknownJobError(name)
        state = self._states.get(name)
        if state is None:
            raise UnknownJobError(name)
        return state

    def _forward_run_now(self, state, user, now):
        with self._lock:
            running = state.current is not None and not self._is_stuck(state.current)
            data = state.to_dict()
        if running:
            raise JobBusyError(f"{state.name} is already running; wait for it to finish.")
        if not self.scheduler_info()["running"]:
            raise NotLeaderError(
                "No scheduler is running, so the job cannot start; start a server with "
                "JOBS_SCHEDULER=1."
            )
        self.store.add_command(state.name, "run", user=user, at=now, origin=self.owner)
        return data

    # -- views -----------------------------------------------------------------------

    def job(self, name):
        """The job's state as the API shows it."""
        state = self._state(name)
        with self._lock:
            return state.to_dict()

    def jobs(self):
        with self._lock:
            return [s.to_dict() for s in self._states.values()]

    def snapshot(self):
        """{"scheduler", "version", "jobs"}: everything the page shows, at one version."""
        with self._lock:
            return self._snapshot_locked(self.bus.version)

    def _snapshot_locked(self, version):
        return {
            "scheduler": self.scheduler_info(),
            "version": version,
            "jobs": [s.to_dict() for s in self._states.values()],
        }

    def subscribe(self):
        """A subscription whose ``snapshot`` is the state at its starting version."""
        with self._lock:
            return self.bus.subscribe(self._snapshot_locked)

    def runs(self, name, limit=20):
        """The job's most recent runs, newest first (the running one included)."""
        self._state(name)
        rows = self.store.runs(name, limit)
        return [_run_row_to_dict(row) for row in rows]

    def scheduler_info(self):
        """Whether a scheduler is alive anywhere (a fresh lease), and which one."""
        return self._scheduler_info(self._scheduler_status())

    def _scheduler_status(self):
        """(running anywhere, lease holder, saving works, why not): what the streams
        are told about whenever it changes (the heartbeat aside)."""
        lease = self._lease_info
        alive = lease is not None and lease["expires_at"] > self.clock.now()
        return (
            bool(self.leader or alive),
            lease["holder"] if lease else None,
            not self.writer.failing and self.store.write_failure is None,
            self.writer.last_error or self.store.write_failure,
        )

    def _scheduler_info(self, status):
        running, holder, persistence_ok, persistence_error = status
        lease = self._lease_info
        return {
            "running": running,
            "here": self.leader,
            "holder": holder,
            "heartbeat_at": to_iso(lease["renewed_at"]) if lease else None,
            "persistence_ok": persistence_ok,
            "persistence_error": persistence_error,
        }

    def _capture(self, state):
        """The job's view and its raw state, taken under the lock, for ``_emit``, with
        a stamp that orders captures of the same job."""
        return state.to_dict(), st.state_to_raw(state), next(self._capture_stamps)

    def _emit(self, events):
        """Publish job changes here and, from the scheduler, to the other processes
        (through the database, where only each job's latest state is written)."""
        flush = False
        with self._emit_lock:
            for data, raw, stamp in events:
                name = data["name"]
                # Captures are taken under the engine lock but published after it is
                # released, so two threads can race here: an older state must never
                # be published after a newer one (the page would show it until the
                # job's next change).
                if stamp <= self._emitted_stamps.get(name, -1):
                    continue
                self._emitted_stamps[name] = stamp
                self.bus.publish("job", name, data)
                if self.leader:
                    with self._live_lock:
                        self._live_pending[name] = raw
                        if not self._live_queued:
                            self._live_queued = flush = True
        if flush:
            self.writer.submit(self._write_live)

    def _write_live(self, conn):
        """In the writer: save the latest live state of every job that changed.
        Each is forgotten only once it is committed (a failed write keeps it)."""
        with self._live_lock:
            self._live_queued = False  # a change from now on queues the next write
            pending = dict(self._live_pending)
        for index, (name, raw) in enumerate(pending.items(), 1):
            self.store.save_live(conn, name, raw, self.owner)
            if index % 8 == 0:
                native_sleep(0)  # see RunWriter: a due job's start comes first

        def committed():
            with self._live_lock:
                for name, raw in pending.items():
                    if self._live_pending.get(name) is raw:  # not changed since
                        del self._live_pending[name]

        return committed

    def _publish_scheduler(self, status=None):
        status = status or self._scheduler_status()
        self._reported_scheduler = status
        self.bus.publish("scheduler", "scheduler", self._scheduler_info(status))

    def _publish_scheduler_if_changed(self):
        """Tell the streams when a scheduler starts or stops anywhere, or saving
        starts or stops failing."""
        status = self._scheduler_status()
        if status != self._reported_scheduler:
            self._publish_scheduler(status)

    # -- the lease -------------------------------------------------------------------

    def keep_lease(self):
        """Renew or try to take the lease once; tell the loop if leadership changed."""
        with self._lease_lock:
            renewed_at = self._keep_lease_locked()
        info = self._lease_info
        if renewed_at is not None and info is not None and info["holder"] == self.owner:
            # Our own renewal: no need to read back what was just written.
            self._lease_info = dict(
                info, renewed_at=renewed_at, expires_at=renewed_at + self.lease_ttl
            )
        else:
            try:
                self._lease_info = self.store.lease()
            except StoreError:
                pass
        self._publish_scheduler_if_changed()

    def _keep_lease_locked(self):
        """Renew or try to take the lease; the time of a successful renewal, if any."""
        now, mono = self.clock.now(), self.clock.monotonic()
        renewed = False
        if self.run_jobs and not self._stopping:
            try:
                if self._holding:
                    held = renewed = self.store.renew_lease(self.owner, now, self.lease_ttl)
                else:
                    held = self.store.acquire_lease(
                        self.owner, now, self.lease_ttl, holder_is_gone=_holder_is_gone
                    )
            except StoreError as exc:
                log.error("Cannot reach the scheduler lease: %s", exc)
                held = None
            if held:
                # Stop a little before the lease ends, so no other holder ever overlaps.
                self._lease_valid_until = mono + self.lease_ttl * 0.8
                # Lead again after a lapse too (the loop let go when its lease
                # ran out while the database could not be written).
                if not self._holding or not self.leader:
                    self._holding = True
                    self._commands.put(("lead", None))
                    self._wake.put(None)
            elif held is False and self._holding:
                self._holding = False
                self._commands.put(("follow", None))
                self._wake.put(None)
        self._renewed = renewed
        return now if renewed else None

    # -- following the other processes ----------------------------------------------

    def sync(self):
        """Take in what other processes changed: controls they saved, the live state
        the scheduler published, and (in the scheduler) run-now requests they queued."""
        version = self.store.data_version()
        if version == self._data_version and self._synced_seq is not None:
            return  # nothing at all was committed since the last look
        self._data_version = version
        if self._synced_seq is not None and self.store.change_seq() == self._synced_seq:
            return  # only lease renewals and run records: nothing to follow
        newest, settings, live = self.store.changes_since(
            self._synced_seq or 0, live=not self.leader
        )
        self._synced_seq = newest
        events = []
        now = self.clock.now()
        # Saved controls and live states in the order they were written.
        changes = sorted(
            [("control", row) for row in settings] + [("live", row) for row in live],
            key=lambda change: change[1]["seq"],
        )
        with self._lock:
            for kind, row in changes:
                state = self._states.get(row["job"])
                if state is None or row["origin"] == self.owner:
                    continue
                if kind == "live":
                    if not self.leader:
                        st.apply_raw(state, row["data"])
                        events.append(self._capture(state))
                    continue
                interval = row["interval_seconds"] or state.definition.interval
                paused = bool(row["paused"])
                if self.leader:
                    state.next_run = (
                        None
                        if paused
                        else self._next_run_after_change(
                            state,
                            interval,
                            now,
                            was_paused=state.paused,
                            was_interval=state.interval,
                        )
                    )
                    self._commands.put(("sync", state.name))
                    self.writer.submit(
                        partial(_save_next_run, self.store, state.name, state.next_run)
                    )
                state.paused, state.interval = paused, interval
                if paused:
                    state.next_run = None
                events.append(self._capture(state))
        if events and self.leader:
            self._wake.put(None)
        self._emit(events)
        if self.leader:
            for command in self.store.pending_commands():
                try:
                    self.run_now(command["job"], user=command["user"], command_id=command["id"])
                except (JobBusyError, UnknownJobError, NotLeaderError) as exc:
                    log.info("Queued run of %s not started: %s", command["job"], exc)
                    self.store.drop_command(command["id"])

    def _lease_valid(self):
        return (
            self._lease_valid_until is not None and self.clock.monotonic() < self._lease_valid_until
        )

    def _keep_forever(self):
        """The keeper thread: renew (or try for) the lease when due, and take in
        other processes' changes whenever the database file changes."""
        next_lease = 0.0
        while not self._stopping:
            mono = time.monotonic()
            if mono >= next_lease:
                try:
                    self.keep_lease()
                except Exception:
                    log.exception("The lease keeper failed a round; it carries on")
                # The holder renews twice per lease (it stops starting jobs at 0.8 of
                # it), and again a second after a renewal that failed.  A standby
                # looks every second at most: it takes over at once from a holder
                # that died on this machine, after the lease time from one it cannot see.
                if self._holding and self._renewed:
                    period = self.lease_ttl / 2
                else:
                    period = min(1.0, self.lease_ttl / 4)
                next_lease = time.monotonic() + period
                if self._watch is not None:
                    self._watch.discard()  # our own renewal is no news
            try:
                self.sync()
            except Exception:
                log.exception("Following the other processes failed a round; it carries on")
            wait = max(0.0, next_lease - time.monotonic())
            if self._watch is not None:
                self._watch.wait(wait)
            else:
                try:
                    self._keeper_wake.get(timeout=min(wait, self.sync_interval))
                except Empty:
                    pass


def _this_process():
    """host:pid-namespace:pid, which tells a process on this machine whether the
    holder of the lease is still alive (see ``_holder_is_gone``)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}:{namespace}:{os.getpid()}"


def _holder_is_gone(holder):
    """True only if ``holder`` was a process on this machine, in this process
    namespace, that no longer exists.  Anything else (another host, a container,
    a name in another format) is treated as alive: its lease then simply expires."""
    try:
        host, namespace, pid, _ = holder.rsplit(":", 3)
        pid = int(pid)
    except (AttributeError, ValueError):
        return False
    here_host, here_namespace, here_pid = _this_process().rsplit(":", 2)
    if host != here_host or namespace != here_namespace or namespace == "0":
        return False
    if pid == int(here_pid) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    try:  # killed but not yet reaped by its parent: gone all the same
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _error_message(exc):
    text = str(exc).strip()
    name = type(exc).__name__
    if not text:
        return name
    return text if len(text) <= 2000 else text[:2000] + " …[truncated]"


def _record_starts(store, owner, starts, conn):
    """Record runs that started: [(run, the job's next slot)]."""
    for index, (run, next_run) in enumerate(starts, 1):
        store.insert_run(conn, run, owner)
        fields = {"last_started_at": run.started_at, "next_run": next_run}
        if run.slot is not None:
            fields["last_slot"] = run.slot
        store.save_job_state(conn, run.job, **fields)
        if index % 8 == 0:
            native_sleep(0)  # see RunWriter: a due job's start comes first


def _record_finish(store, run, conn):
    store.finish_run(conn, run)
    store.save_job_state(
        conn,
        run.job,
        last_finished_at=run.finished_at,
        last_duration=run.duration,
        last_outcome=run.outcome,
        last_error=run.error,
        last_traceback=run.traceback,
    )


def _record_log(store, run, conn):
    store.update_run_log(conn, run)


def _save_next_run(store, name, next_run, conn):
    store.save_job_state(conn, name, next_run=next_run)


def _run_row_to_dict(row):
    duration = row.get("duration")
    return {
        "id": row["run_id"],
        "started_at": to_iso(row["started_at"]),
        "finished_at": to_iso(row["finished_at"]),
        "duration_ms": None if duration is None else round(duration * 1000, 3),
        "outcome": row["outcome"],
        "trigger": row["trigger"],
        "user": row["user"],
        "error": row["error"],
        "traceback": row["traceback"],
        "log": row["log"],
        "result": row["result"],
        "slot": to_iso(row["slot"]),
    }
