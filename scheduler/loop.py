"""The loop: the one thread (``jobs-loop``) that owns every job's state.

It owns the ``JobState`` of every job, the timetable (and so every job's next
run), whether this process leads and under which lease epoch, the runs' deadlines
and the bookkeeping of runs.  Every other thread sends it a message through
``post`` (or ``call``, which waits for the answer) and reads what it published
(the event bus keeps each job's latest view): workers post a run's outcome and
progress, controls post a saved setting or ask to start a Run Now, the keeper
posts leadership and what other processes saved.  One queue carries every
message, so none can be lost or overtaken: a finished run always reaches the
bookkeeping, a Run Now's deadline is always watched.

Each round handles the messages that came, hands every due job to the workers
first, then (once they have all started) records and publishes what changed,
flags runs past their timeout, and sleeps until the next slot, deadline, end of
the lease or message.  The handlers are in ``loop_messages``.
"""

import logging
import time
from functools import partial

from . import runs
from . import state as st
from .intervals import format_interval
from .loop_messages import DEFER, MessageHandlers
from .native import Empty, Reply, SimpleQueue
from .native import sleep as native_sleep
from .storage import NextRun
from .timetable import Timetable

log = logging.getLogger(__name__)

MAX_MESSAGES_PER_ROUND = 5000
LAPSED_LOOK_SECONDS = 1.0


class Loop(MessageHandlers):
    def __init__(self, states, *, clock, writer, publisher, executor, execute, stagger, started_at):
        self.states = states
        self.started_at = started_at  # a job that never ran counts its first interval from here
        self.clock = clock
        self.writer = writer
        self.publisher = publisher
        self.executor = executor
        self._execute = execute  # execute(run): the body, on a worker thread
        self.stagger = stagger
        self.inbox = SimpleQueue()
        self.timetable = Timetable()
        # Read by other threads as snapshots; written here only.
        self.leading = False
        self.lapsed = False  # leading, but the lease could not be renewed in time
        self.epoch = None
        self.tenure = lambda: (None, 0.0)  # the leadership's (epoch, end), a snapshot
        self.stopping = False
        self.ended = False
        self.running = set()  # jobs with a run executing in this process
        self.awaiting_drain = False  # the executor posts a wake once its queue drains
        # While due jobs wait for a worker, bookkeeping waits (at most this long).
        self.bookkeeping_hold = 0.05
        self.fault_backoff = 1.0
        self._dispatched = []  # (state, run or None, next slot, records) not yet recorded
        self._finished = []  # outcomes posted by workers, not yet recorded
        self._hold_until = None
        self._timed = set()  # jobs whose current run has a deadline to watch
        self._next_deadline = None
        self._replies = []  # answered at the end of the round
        self._to_publish = {}  # jobs whose new state is published later this round
        self._claimed = {}  # run id -> (run count, last start) before a Run Now claimed it

    # -- from other threads --------------------------------------------------------

    def post(self, *message):
        self.inbox.put(message)

    def call(self, *message, timeout=30.0):
        """Send ``message`` and wait for the loop's answer (or its exception)."""
        reply = Reply()
        self.inbox.put((*message, reply))
        return reply.wait(timeout)

    def wake(self):
        self.inbox.put(("wake",))

    def executor_drained(self):
        """Called by the worker that took the last waiting task."""
        if self.awaiting_drain:
            self.awaiting_drain = False
            self.inbox.put(("wake",))

    # -- the thread ----------------------------------------------------------------------

    def run(self):
        while not self.ended:
            try:
                self._receive(self._delay())
                self._round()
            except Exception:  # supervise: a fault in one round must not end scheduling
                log.exception("The scheduler loop failed a round; it carries on")
                native_sleep(self.fault_backoff)

    def _receive(self, timeout):
        try:
            if timeout is None:
                message = self.inbox.get()
            elif timeout > 0:
                message = self.inbox.get(timeout=timeout)
            else:
                message = self.inbox.get_nowait()
        except Empty:
            return
        for _ in range(MAX_MESSAGES_PER_ROUND):
            self._handle(message)
            try:
                message = self.inbox.get_nowait()
            except Empty:
                return

    def _handle(self, message):
        reply = message[-1] if message and isinstance(message[-1], Reply) else None
        args = message[1:-1] if reply is not None else message[1:]
        try:
            result = getattr(self, "on_" + message[0])(*args)
        except Exception as exc:
            if reply is None:
                log.exception("The scheduler loop could not handle %s", message[0])
            else:
                reply.fail(exc)
            return
        if reply is None:
            return
        if result is DEFER:
            self._replies.append(reply)
        else:
            reply.set(result)

    def _round(self):
        for state in self._to_publish.values():
            self.publish(state)  # its state now: never an older one after a newer
        self._to_publish.clear()
        if self.leading and not self.stopping:
            valid = self.lease_valid()
            if valid and self.lapsed:
                self.lapsed = False
                log.info("The scheduler lease is renewed; starting jobs again")
                self.publisher.scheduler_changed()
            if valid:
                self._dispatch_due()
            elif not self.lapsed:
                self.lapsed = True
                log.warning("The scheduler lease could not be renewed; not starting jobs")
                self.publisher.scheduler_changed()
        held = self._held()
        if not held:
            self.bookkeep()
        self._flag_stuck_runs()
        if held:
            return  # a round is done once what it started is recorded and published
        replies, self._replies = self._replies, []
        for reply in replies:
            reply.set()

    @property
    def busy(self):
        """A run executes here, or one that ended is not yet recorded (a snapshot)."""
        return bool(self.running or self._finished)

    def lease_valid(self):
        epoch, until = self.tenure()
        return epoch == self.epoch and self.clock.monotonic() < until

    def _delay(self):
        """Real seconds the loop may wait for a message before it has something to do
        (None: only a message will do).  Slots, deadlines and the lease's end are
        on the engine's clock, which says how long that is; bookkeeping held back
        for a burst is on the real clock."""
        timed = []
        if self.leading and not self.stopping and not self.lapsed:
            next_due = self.timetable.next_due()
            if next_due is not None:
                timed.append(max(0.0, next_due - self.clock.now()))
            # At the end of the tenure it last read: renewed by then, it goes on.
            timed.append(max(0.0, self.tenure()[1] - self.clock.monotonic()))
        elif self.leading and self.lapsed:
            timed.append(LAPSED_LOOK_SECONDS)  # renewed meanwhile? look again soon
        if self._next_deadline is not None:
            timed.append(max(0.0, self._next_deadline - self.clock.monotonic()))
        wait = self.clock.wait_seconds(min(timed, default=None), self.wake)
        if self._dispatched or self._finished:
            hold = 0.0 if self._hold_until is None else self._hold_until - time.monotonic()
            wait = max(0.0, hold) if wait is None else min(wait, max(0.0, hold))
        return wait

    # -- starting due jobs, then their bookkeeping -------------------------------------

    def _dispatch_due(self):
        now = self.clock.now()
        due = self.timetable.take_due(now)
        if not due:
            return
        mono = self.clock.monotonic()
        tasks, started = [], []
        for name, slot, next_run in due:
            state = self.states[name]
            state.next_run = next_run
            if runs.is_busy(state, mono):
                self._dispatched.append((state, None, next_run, ()))
                continue
            run, replaced = runs.start_run(
                state,
                trigger=st.SCHEDULED,
                user=None,
                slot=slot,
                now=now,
                mono=mono,
                epoch=self.epoch,
            )
            tasks.append(partial(self._execute, run))
            self._dispatched.append((state, run, next_run, replaced))
            started.append(run)
        self.executor.submit_all(tasks)
        for run in started:  # after the hand-over: nothing stands before a start
            self.running.add(run.job)
            if run.deadline is not None:
                self._timed.add(run.job)
        if self._hold_until is None:
            self._hold_until = time.monotonic() + self.bookkeeping_hold

    def _held(self):
        """Whether due jobs still wait for a worker (and the hold has time left)."""
        if self._hold_until is None or self.stopping or time.monotonic() >= self._hold_until:
            return False
        if not self.executor.pending():
            return False
        self.awaiting_drain = True  # then look again: it may have drained just now
        return bool(self.executor.pending())

    def bookkeep(self):
        """Record the runs started and finished since the last time, then publish."""
        self._hold_until = None
        self.awaiting_drain = False
        if not self._dispatched and not self._finished:
            return
        changed = {}
        dispatched, self._dispatched = self._dispatched, []
        for state, run, next_run, replaced in dispatched:
            changed[state.name] = state
            for record in replaced:
                self.writer.submit(record)
            if run is None:
                log.info("Skipped a slot of %s: its previous run is still going", state.name)
                self.writer.submit(NextRun(state.name, next_run, self.epoch))
            else:
                self.writer.submit(runs.started_record(run, next_run, self.epoch))
        finished, self._finished = self._finished, []
        for outcome in finished:
            state = self._record_finish(*outcome)
            if state is not None:
                changed[state.name] = state
        for state in changed.values():
            self.publish(state)

    def _record_finish(self, run, outcome, error, trace, result, now, mono):
        state = self.states[run.job]
        changed, record = runs.finish_run(
            state, run, outcome, error, trace, result, now, mono, self.epoch
        )
        self.writer.submit(record)
        if state.current is None:
            self.running.discard(state.name)
        return changed

    def _flag_stuck_runs(self):
        """Mark runs past their timeout as stuck and ask them to stop."""
        mono = self.clock.monotonic()
        next_deadline = None
        for name in list(self._timed):  # not every job at every round
            state = self.states[name]
            run = state.current
            if run is None or run.deadline is None or run.mirrored or state.stuck:
                self._timed.discard(name)
            elif mono >= run.deadline:
                state.stuck = True
                run.cancelled = True
                run.log.warning(
                    "Still running after its timeout of %s; asked to stop",
                    format_interval(int(state.definition.timeout)),
                )
                self._timed.discard(name)
                self.publish(state)
            elif next_deadline is None or run.deadline < next_deadline:
                next_deadline = run.deadline
        self._next_deadline = next_deadline

    def watch_deadline(self, run):
        if run.deadline is not None:
            self._timed.add(run.job)

    def publish_soon(self, state):
        self._to_publish[state.name] = state

    def publish(self, state):
        """Publish the job's new state (and, leading, save it for the other processes)."""
        return self.publisher.job_changed(state, self.epoch if self.leading else None)
