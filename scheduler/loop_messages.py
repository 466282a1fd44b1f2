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

    def on_reserve(self, name, user):
        """First half of a Run Now: the run, held for this caller while it records
        the run (off this thread); returns (its start record, the run)."""
        state = self.states[name]
        if self.stopping:
            raise ShuttingDownError("The server is stopping; try again once it is back.")
        if not self.leading or not self.lease_valid():
            raise NotLeaderError("This server does not run the scheduler right now; try again.")
        mono = self.clock.monotonic()
        if runs.is_busy(state, mono):
            raise JobBusyError(
                f"{name} is already running (started {to_iso(state.last_started_at)}); "
                "wait for it to finish."
            )
        run = runs.new_run(
            state, trigger=st.MANUAL, user=user, slot=None, now=self.clock.now(), mono=mono
        )
        state.reserved = run
        return runs.started_record(run, state.next_run, self.epoch), run

    def on_started(self, run):
        """Second half: the run is recorded and its body is about to start."""
        state = self.states[run.job]
        if state.reserved is run:
            state.reserved = None
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
        self.publish_soon(state)  # once the caller has its answer, in this round
        return state.to_dict()

    def on_abort(self, run):
        """The Run Now could not be recorded: as if it had never been asked for."""
        state = self.states[run.job]
        if state.reserved is run:
            state.reserved = None

    # -- settings ------------------------------------------------------------------------

    def on_setting(self, setting):
        """A saved pause, resume or interval (from here or another process): applied
        only if newer than the one the job has.  Returns the job's view."""
        state = self.states.get(setting.job)
        if state is None:
            return None
        if setting.seq <= state.settings_seq:
            return state.to_dict()  # a newer one is already applied
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
        return self.publish(state)

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
