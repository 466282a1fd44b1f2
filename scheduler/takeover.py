"""Becoming the scheduler: what the keeper reads once it holds the lease (``read``,
on the keeper's thread), and how the loop then schedules every job (``take_over``,
on the loop's thread)."""

import math
from dataclasses import dataclass

from .state import recent_run
from .storage import NextRun

LAST_RUN_FIELDS = (
    "last_started_at",
    "last_finished_at",
    "last_duration",
    "last_outcome",
    "last_error",
    "last_traceback",
    "last_slot",
)


@dataclass(frozen=True)
class TakenOver:
    settings: dict  # job -> Setting
    rows: dict  # job -> saved job state (last run, next slot)


def read(storage, now, owner):
    """Close the runs a dead holder left open, then read what the loop needs."""
    storage.mark_interrupted_runs(now, except_owner=owner)
    return TakenOver(storage.load_settings(), storage.load_job_states())


def load(states, storage, recent_runs):
    """At start, before the loop runs: each job's settings, last run and chart."""
    settings = storage.load_settings()
    rows = storage.load_job_states()
    recent = storage.recent_runs(list(states), recent_runs)
    for name, state in states.items():
        apply_setting(state, settings.get(name))
        row = rows.get(name)
        if row:
            for field in LAST_RUN_FIELDS:
                setattr(state, field, row[field])
            state.next_run = None if state.paused else row["next_run"]
        state.recent = [recent_run(*r) for r in recent.get(name, [])]


def apply_setting(state, setting):
    if setting is None or setting.seq <= state.settings_seq:
        return
    state.settings_seq = setting.seq
    state.paused = setting.paused
    state.interval = setting.interval_seconds or state.definition.interval
    if state.paused:
        state.next_run = None


def take_over(loop, taken):
    """Put every active job on the loop's timetable: a saved future slot is kept (a
    daily job restarted every hour still runs daily), a job that never ran runs
    one interval from now (saved, so a restart does not push it further), and jobs
    that fell due while no scheduler ran start soon, most overdue first, spread
    ``stagger`` seconds apart."""
    now = loop.clock.now()
    overdue = []
    loop.timetable.clear()
    for name, state in loop.states.items():
        if state.current is not None and state.current.mirrored:
            state.current, state.stuck = None, False  # that process is gone
        apply_setting(state, taken.settings.get(name))
        row = taken.rows.get(name) or {}
        saved_start = row.get("last_started_at")
        if state.current is None and _newer_or_same(saved_start, state.last_started_at):
            for field in LAST_RUN_FIELDS:
                setattr(state, field, row[field])
        if state.paused:
            state.next_run = None
            continue
        persisted = row.get("next_run")
        if persisted is None:
            state.next_run = now + state.interval
            loop.writer.submit(NextRun(name, state.next_run, loop.epoch))
        elif persisted <= now:
            overdue.append((persisted, name))
            continue
        else:
            state.next_run = persisted
        loop.timetable.put(name, state.interval, state.next_run)
    for index, (_, name) in enumerate(sorted(overdue)):
        state = loop.states[name]
        state.next_run = now + loop.stagger * (index + 1)
        loop.timetable.put(name, state.interval, state.next_run)


def _newer_or_same(saved, shown):
    if saved is None:
        return False
    return shown is None or saved >= shown or math.isclose(saved, shown)
