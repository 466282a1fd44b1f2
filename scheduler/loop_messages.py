"""What the loop does with each message it receives (``on_<kind>``), on its own thread.

Part of ``loop.Loop``, kept apart so that each file reads in one sitting.  A
handler's return value answers a ``call``; an exception raised here reaches the
caller; ``DEFER`` answers at the end of the round.
"""

import logging

from . import runs
from . import state as st
from .clock import to_iso
from .errors import JobBusyError, NotLeaderError, ShuttingDownError
from .storage import NextRun
from .takeover import take_over

log = logging.getLogger(__name__)

DEFER = object()  # a handler's answer that is given at the end of the round


class MessageHandlers:
    # -- runs ------------------------------------------------------------------------

    def on_finished(self, *outcome):
        self._finished.append(outcome)  # recorded with the next bookkeeping

    def on_progress(self, run, fraction, message):
        state = self.states[run.job]
        if state.current is run:
            run.progress = (fraction, message)
            self.publish(state)

    def on_claim(self, run, epoch):
        """A Run Now that its caller records meanwhile: the job is the run's from now
        on, unless it is refused (the server stopping, this process not leading under
        ``epoch``, the job busy).  Returns the job's view; it is published once the
        caller says the run is recorded (``on_recorded``), or undone (``on_abort``)."""
        state = self.states[run.job]
        if self.stopping:
            raise ShuttingDownError()
        if not self.leading or epoch != self.epoch or not self.lease_valid():
            raise NotLeaderError("This server does not run the scheduler right now; try again.")
        if runs.is_busy(state, self.clock.monotonic()):
            raise JobBusyError(
                f"{run.job} is already running (started {to_iso(state.last_started_at)}); "
                "wait for it to finish."
            )
        self._claimed[run.id] = (state.run_count, state.last_started_at)
        _, replaced = runs.start_run(
            state,
            trigger=run.trigger,
            user=run.user,
            slot=None,
            now=run.started_at,
            mono=self.clock.monotonic(),
            epoch=self.epoch,
            run=run,
        )
        for record in replaced:
            self.writer.submit(record)
        self.running.add(state.name)
        self.watch_deadline(run)
        return state.to_dict()

    def on_recorded(self, run):
        """The claimed Run Now is on disk and its body has been handed to a worker
        (it may even have ended already: then the bookkeeping published that)."""
        self._claimed.pop(run.id, None)
        state = self.states[run.job]
        if state.current is run:
            self.publish_soon(state)

    def on_abort(self, run):
        """The claimed Run Now could not be recorded: as if it had never been asked for."""
        before = self._claimed.pop(run.id, None)
        state = self.states[run.job]
        if before is None or state.current is not run:
            return
        state.current, state.stuck = None, False
        state.run_count, state.last_started_at = before
        self.running.discard(state.name)

    # -- settings ------------------------------------------------------------------------

    def on_setting(self, setting, with_next_run=False):
        """A saved pause, resume or interval (from here or another process): applied
        only if newer than the one the job has.  Returns the job's view (and, with
        ``with_next_run``, its next slot as this process sees it)."""
        state = self.states.get(setting.job)
        if state is None:
            return None
        if setting.seq <= state.settings_seq:
            # A newer one is already applied.
            return (state.to_dict(), state.next_run) if with_next_run else state.to_dict()
        was_paused, was_interval = state.paused, state.interval
        state.settings_seq = setting.seq
        state.paused = setting.paused
        state.interval = setting.interval_seconds or state.definition.interval
        if state.paused:
            state.next_run = None
        elif was_paused or state.interval != was_interval or state.next_run is None:
            base = state.last_started_at
            if base is None:
                base = self.started_at
            state.next_run = max(self.clock.now(), base + state.interval)
        if self.leading:
            if state.paused:
                self.timetable.remove(state.name)
            else:
                self.timetable.put(state.name, state.interval, state.next_run)
            self.writer.submit(NextRun(state.name, state.next_run, self.epoch))
        view = self.publish(state)
        return (view, state.next_run) if with_next_run else view

    def on_live(self, change):
        """The scheduler in another process published a job's state."""
        state = self.states.get(change.job)
        if state is None or self.leading:
            return
        st.apply_raw(state, change.data)
        self.publish(state)

    # -- leadership ------------------------------------------------------------------------

    def on_lead(self, epoch, taken):
        """The keeper took the lease: schedule every active job (see ``takeover``)."""
        self.epoch, self.lapsed = epoch, False
        if self.leading:
            return
        take_over(self, taken)
        self.leading = True
        for state in self.states.values():
            self.publish(state)
        self.publisher.scheduler_changed()
        log.info("This process now runs the scheduler (epoch %d)", epoch)

    def on_follow(self, epoch=None):
        """The lease is lost (or given up): start nothing more."""
        if not self.leading or (epoch is not None and epoch != self.epoch):
            return
        self.leading = self.lapsed = False
        self.timetable.clear()
        self.publisher.scheduler_changed()
        log.warning("This process no longer runs the scheduler")

    # -- stopping and tests ------------------------------------------------------------------------

    def on_wake(self):
        pass

    def on_step(self):
        return DEFER  # answered once this round is done

    def on_stop(self):
        self.stopping = True

    def on_interrupt(self):
        """The grace is over: record what still runs here as interrupted."""
        now = self.clock.now()
        for name in list(self.running):
            state = self.states[name]
            run = state.current
            if run is not None and not run.mirrored:
                self.writer.submit(
                    runs.close_run(
                        state,
                        run,
                        st.INTERRUPTED,
                        now,
                        error=runs.INTERRUPTED_ERROR,
                        epoch=self.epoch,
                        executing=True,
                    )
                )
                self.publish(state)
            self.running.discard(name)

    def on_end(self):
        self.bookkeep()
        self.ended = True
