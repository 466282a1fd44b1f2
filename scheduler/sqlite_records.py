"""Writing the engine's typed records into the SQLite tables, inside a transaction
that the caller (``Store``) opened.  See ``storage`` for what each record means and
how fencing works."""

import json
import logging

from .errors import CommandClaimedError, LeaseLostError
from .native import sleep
from .storage import LiveState, NextRun, RunFinished, RunLogKept, RunStarted, WriteOutcome

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
INTERRUPTED_ERROR = "Interrupted: the server stopped during this run."


def current_lease(conn):
    """(holder, epoch) of the lease row, or (None, None)."""
    row = conn.execute("SELECT holder, epoch FROM lease WHERE name = ?", (LEASE_NAME,)).fetchone()
    return (row["holder"], row["epoch"]) if row else (None, None)


def write_records(conn, records, owner, replaying=False):
    """Write ``records`` in order; leave out those fenced off (see ``storage``).

    ``replaying``: records kept in a file at a stop, written at the next start: only
    the runs themselves (their rows), never a job's next slot or state, which a
    scheduler that ran meanwhile has moved on."""
    holder, epoch = current_lease(conn)
    fenced, duplicates = 0, []
    live = {}  # only each job's latest live state is written
    for index, record in enumerate(records, 1):
        current = holder == owner and getattr(record, "epoch", None) == epoch and not replaying
        if replaying and type(record) in (NextRun, LiveState):
            continue
        if record.fenced and not current and not replaying:
            fenced += 1
            continue
        kind = type(record)
        if kind is RunStarted:
            if not insert_run(conn, record, owner):
                duplicates.append((record.job, record.slot))
                continue
            if replaying:
                continue
            fields = {"last_started_at": record.started_at, "next_run": record.next_run}
            if record.slot is not None:
                fields["last_slot"] = record.slot
            save_job_state(conn, record.job, **fields)
        elif kind is RunFinished:
            finish_run(conn, record, with_job_state=current)
        elif kind is NextRun:
            save_job_state(conn, record.job, next_run=record.next_run)
        elif kind is LiveState:
            live[record.job] = record
        elif kind is RunLogKept:
            conn.execute(
                "UPDATE runs SET log = ? WHERE run_id = ?", (json.dumps(record.log), record.run_id)
            )
        else:
            raise TypeError(f"Not a record: {record!r}")
        if index % 8 == 0:
            sleep(0)  # a thread waiting for the GIL with a job due gets it now
    for record in live.values():
        conn.execute(
            "INSERT INTO job_live (job, data, origin, seq) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (job) DO UPDATE SET data = excluded.data, origin = excluded.origin,"
            " seq = excluded.seq",
            (record.job, json.dumps(record.data), owner, next_seq(conn)),
        )
    return WriteOutcome(fenced=fenced, duplicates=tuple(duplicates))


def record_manual_run(conn, start, owner, command_id=None):
    """Record a manual run with its audit line, only under the current epoch, and
    claim the queued command it carries out (exactly one row, or nothing)."""
    holder, epoch = current_lease(conn)
    if holder != owner or epoch != start.epoch:
        raise LeaseLostError(
            "This server no longer runs the scheduler (another took over); try again."
        )
    if command_id is not None:
        claimed = conn.execute("DELETE FROM commands WHERE id = ?", (command_id,)).rowcount
        if claimed != 1:
            raise CommandClaimedError(f"The queued run {command_id} was already carried out.")
        next_seq(conn)
    insert_run(conn, start, owner)
    save_job_state(conn, start.job, last_started_at=start.started_at)
    add_audit(conn, start.started_at, start.user, start.job, "run", None, start.run_id)


def refuse_manual_run(conn, run_id, reason):
    row = conn.execute("SELECT job FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return
    conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
    conn.execute(
        "UPDATE audit SET action = 'run refused', new_value = ?"
        " WHERE action = 'run' AND new_value = ?",
        (reason, run_id),
    )
    conn.execute(
        "UPDATE job_state SET last_started_at ="
        " (SELECT max(started_at) FROM runs WHERE job = ?) WHERE job = ?",
        (row["job"], row["job"]),
    )


def refuse_command(conn, command_id, at, reason):
    """Drop a queued command that cannot be carried out, saying why in the audit
    trail; False if another process claimed it first."""
    row = conn.execute("SELECT job, user FROM commands WHERE id = ?", (command_id,)).fetchone()
    if (
        row is None
        or conn.execute("DELETE FROM commands WHERE id = ?", (command_id,)).rowcount != 1
    ):
        return False
    next_seq(conn)
    add_audit(conn, at, row["user"], row["job"], "run refused", None, reason)
    return True


def insert_run(conn, start, owner):
    """Insert a started run; False if its (job, slot) or id was already there."""
    return (
        conn.execute(
            "INSERT INTO runs (run_id, job, slot, trigger, user, owner, started_at, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'running') ON CONFLICT DO NOTHING",
            (
                start.run_id,
                start.job,
                start.slot,
                start.trigger,
                start.user,
                owner,
                start.started_at,
            ),
        ).rowcount
        == 1
    )


def finish_run(conn, finish, with_job_state=True):
    conn.execute(
        "UPDATE runs SET finished_at = ?, duration = ?, outcome = ?, error = ?,"
        " traceback = ?, log = ?, result = ? WHERE run_id = ?",
        (
            finish.finished_at,
            finish.duration,
            finish.outcome,
            finish.error,
            finish.traceback,
            json.dumps(finish.log),
            finish.result,
            finish.run_id,
        ),
    )
    if with_job_state:
        save_job_state(
            conn,
            finish.job,
            last_finished_at=finish.finished_at,
            last_duration=finish.duration,
            last_outcome=finish.outcome,
            last_error=finish.error,
            last_traceback=finish.traceback,
        )


def save_job_state(conn, job, **fields):
    """Upsert some columns of a job's state row."""
    columns = ", ".join(fields)
    marks = ", ".join("?" for _ in fields)
    updates = ", ".join(f"{c} = excluded.{c}" for c in fields)
    conn.execute(
        f"INSERT INTO job_state (job, {columns}) VALUES (?, {marks})"
        f" ON CONFLICT (job) DO UPDATE SET {updates}",
        (job, *fields.values()),
    )


def add_audit(conn, at, user, job, action, old_value, new_value):
    conn.execute(
        "INSERT INTO audit (at, user, job, action, old_value, new_value) VALUES (?, ?, ?, ?, ?, ?)",
        (at, user, job, action, _text(old_value), _text(new_value)),
    )


def next_seq(conn):
    """The next number of the change counter that other processes follow.  Taken
    inside a write transaction, so numbers follow commit order."""
    conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'changes'")
    return conn.execute("SELECT value FROM counters WHERE name = 'changes'").fetchone()[0]


def _text(value):
    return None if value is None else str(value)
