"""Runs: how one starts, how it ends, and the body on a worker thread.

The functions that change a ``JobState`` are called on the loop's thread only (the
loop owns every job state); each returns the record the run writer is to save.
``execute`` runs on a worker thread and touches no job state: it posts the
outcome to the loop.
"""

import traceback

from . import state as st
from .context import RunContext
from .intervals import format_interval
from .storage import RunFinished, RunLogKept, RunStarted

INTERRUPTED_ERROR = "Interrupted: the server stopped during this run."


def start_run(state, *, trigger, user, slot, now, mono, epoch, run=None):
    """Make ``run`` (or a new one) the job's current run; return the records of the
    stuck run it replaces (recorded as timed out), if any.  The caller has checked
    that the job is free or stuck."""
    records = []
    current = state.current
    if current is not None:
        timeout = format_interval(int(state.definition.timeout))
        error = f"Timed out: still running after {timeout}; replaced by a new run."
        records.append(
            close_run(state, current, st.TIMED_OUT, now, error=error, epoch=epoch, executing=True)
        )
    if run is None:
        run = new_run(state, trigger=trigger, user=user, slot=slot, now=now, mono=mono)
    state.current = run
    state.stuck = False
    state.run_count += 1
    state.last_started_at = run.started_at
    if run.slot is not None:
        state.last_slot = run.slot
    return run, records


def new_run(state, *, trigger, user, slot, now, mono):
    timeout = state.definition.timeout
    return st.Run(
        job=state.name,
        trigger=trigger,
        started_at=now,
        user=user,
        slot=slot,
        deadline=None if timeout is None else mono + timeout,
    )


def is_busy(state, mono):
    """A run executes within its timeout."""
    run = state.current
    return run is not None and (run.deadline is None or mono < run.deadline)


def started_record(run, next_run, epoch):
    return RunStarted(
        run_id=run.id,
        job=run.job,
        trigger=run.trigger,
        started_at=run.started_at,
        slot=run.slot,
        user=run.user,
        next_run=next_run,
        epoch=epoch,
    )


def finish_run(state, run, outcome, error, trace, result, now, mono, epoch):
    """Close a run whose body returned; the record to save (None if nothing changed
    on the job: the run was already recorded as timed out or interrupted)."""
    if run.superseded:
        return None, RunLogKept(run.id, run.job, tuple(run.log.lines()))
    if run.deadline is not None and mono >= run.deadline:
        timeout = format_interval(int(state.definition.timeout))
        note = f"Timed out: ran longer than its timeout of {timeout}."
        error = note if error is None else f"{note} {error}"
        outcome = st.TIMED_OUT
    run.result = result
    run.traceback = trace
    return state, close_run(state, run, outcome, now, error=error, epoch=epoch)


def close_run(state, run, outcome, now, *, error, epoch, executing=False):
    """Record ``run``'s end on its job; return the record to save.  ``executing``:
    its body still runs (a stuck run replaced, or one cut off at shutdown): it is
    asked to stop, and what it logs from now on is kept with the record."""
    run.outcome = outcome
    run.finished_at = now
    run.error = error
    if executing:
        run.cancelled = True
        run.superseded = True
    if state.current is run:
        state.current = None
        state.stuck = False
    state.last_finished_at = now
    state.last_duration = run.duration
    state.last_outcome = outcome
    state.last_error = error
    state.last_traceback = run.traceback
    state.remember(run)
    return RunFinished(
        run_id=run.id,
        job=run.job,
        finished_at=now,
        duration=run.duration,
        outcome=outcome,
        error=error,
        traceback=run.traceback,
        log=tuple(run.log.lines()),
        result=run.result,
        epoch=epoch,
    )


def execute(run, definition, *, clock, settings, store, post):
    """The body of a run, on a worker thread; its outcome goes to the loop."""
    context = RunContext(
        run,
        settings=settings,
        store=store,
        on_progress=lambda run, fraction, message: post("progress", run, fraction, message),
    )
    error = trace = result = None
    try:
        result = st.describe_result(definition.func(context))
        outcome = st.OK
    except BaseException as exc:  # record everything; a job never takes a worker down
        outcome = st.FAILED
        error = error_message(exc)
        trace = traceback.format_exc()
    post("finished", run, outcome, error, trace, result, clock.now(), clock.monotonic())


def error_message(exc):
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + " …[truncated]"
