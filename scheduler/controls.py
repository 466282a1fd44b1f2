"""The controls the page calls: Run Now, pause, resume, interval, reset.

Entered by request threads (off the gevent hub), the command line and the keeper
(queued runs).  Owns nothing: each control validates, saves through storage (so an
acknowledged change survives a crash, and a failed save changes nothing), then
hands the saved change to the loop, which owns the job's state, and answers with
the job as the loop then shows it.

Run Now in the scheduler: this thread asks the loop to claim the job for the run
and, meanwhile, records the run with its audit line in a transaction that checks
the lease epoch; once both are done it tells the loop the run is recorded and
hands the body to a worker.  A failed record undoes the claim; a refused claim
(rare: the page's view said the job was free) turns the record into an audit line
saying why.  Anywhere else Run Now is queued in storage for the scheduler.
"""

import logging
from functools import partial

from . import runs
from . import state as st
from .errors import JobBusyError, NotLeaderError, ShuttingDownError, UnknownJobError
from .intervals import format_interval, parse_interval
from .native import Reply

log = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0


class Controls:
    def __init__(self, engine):
        self._engine = engine

    def run_now(self, name, user=None, *, command_id=None):
        """Start a run at once (allowed while paused); JobBusyError while one runs."""
        engine = self._engine
        state = self._check(name)
        loop = engine.loop
        if not (loop.leading and not loop.lapsed):
            if command_id is not None:
                raise NotLeaderError("This process does not run the scheduler right now.")
            return self._queue_run(name, user)
        job = engine.job(name)
        if job["status"] == "running" and not job["stuck"]:
            raise JobBusyError(f"{name} is already running; wait for it to finish.")
        run = runs.new_run(
            state,
            trigger=st.MANUAL,
            user=user,
            slot=None,
            now=engine.clock.now(),
            mono=engine.clock.monotonic(),
        )
        epoch = loop.epoch
        claim = Reply()
        loop.inbox.put(("claim", run, epoch, claim))  # the loop claims the job meanwhile
        try:
            engine.store.record_manual_run(
                runs.started_record(run, None, epoch), owner=engine.owner, command_id=command_id
            )
        except BaseException as exc:
            loop.post("abort", run)
            if isinstance(exc, NotLeaderError):
                engine.leadership.fenced()
            engine.publisher.scheduler_changed()  # saving may have started failing
            raise
        try:
            job = claim.wait(30.0)
        except (JobBusyError, NotLeaderError, ShuttingDownError) as exc:
            # Refused by the loop after all (a slot started it a moment ago, say).
            engine.store.refuse_manual_run(run.id, reason=str(exc))
            raise
        engine.executor.submit(partial(engine.execute, run))
        loop.post("recorded", run)  # publish it (unless it has ended already)
        return job

    def _queue_run(self, name, user):
        engine = self._engine
        job = engine.job(name)
        if job["status"] == "running" and not job["stuck"]:
            raise JobBusyError(f"{name} is already running; wait for it to finish.")
        if not engine.scheduler_info()["running"]:
            raise NotLeaderError(
                "No scheduler is running, so the job cannot start; start a server with "
                "JOBS_SCHEDULER=1."
            )
        engine.store.add_command(name, "run", user=user, at=engine.clock.now(), origin=engine.owner)
        return job

    def pause(self, name, user=None):
        return self._change(name, user, "pause", paused=True)

    def resume(self, name, user=None):
        return self._change(name, user, "resume", paused=False)

    def set_interval(self, name, interval, user=None):
        seconds = parse_interval(interval)
        return self._change(name, user, "interval", interval=seconds)

    def reset_interval(self, name, user=None):
        state = self._check(name)
        return self._change(name, user, "reset", interval=state.definition.interval)

    def _change(self, name, user, action, **changes):
        """Save one control (``paused``, or ``interval`` in seconds), then apply it."""
        engine = self._engine
        default = self._check(name).definition.interval
        if "interval" in changes:
            seconds = changes.pop("interval")
            changes["interval_seconds"] = None if seconds == default else seconds

        def describe(saved, new):
            if action in ("pause", "resume"):
                return _paused_text(saved["paused"]), _paused_text(new["paused"])
            return (
                format_interval(saved["interval_seconds"] or default),
                format_interval(new["interval_seconds"] or default),
            )

        try:
            setting = engine.store.save_control(
                name,
                at=engine.clock.now(),
                user=user,
                action=action,
                origin=engine.owner,
                describe=describe,
                **changes,
            )
        finally:
            engine.publisher.scheduler_changed()  # saving may have started or stopped failing
        job, next_run = engine.loop.call("setting", setting, True)
        # The job's new next slot is on disk too before the control is acknowledged,
        # so a scheduler that takes over now keeps to it: in the scheduler, as the
        # loop worked it out; elsewhere, as a proposal that the scheduler replaces
        # with its own as soon as it applies the control.
        if engine.loop.leading:
            engine.writer.flush(timeout=FLUSH_SECONDS)
        else:
            engine.store.propose_next_run(name, next_run, seq=setting.seq)
        return job

    def _check(self, name):
        """The job's state (for its definition); refuse an unknown job or a stopping server."""
        state = self._engine.states.get(name) if isinstance(name, str) else None
        if state is None:
            raise UnknownJobError(name)
        if self._engine.stopping:
            raise ShuttingDownError()
        return state


def _paused_text(paused):
    return "paused" if paused else "active"
