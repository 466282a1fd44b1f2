"""The scheduler's SQLite database: overrides, last runs, history, audit and the lease.

One file in WAL mode, opened by every process of the app.  Controls write
synchronously (an acknowledged change is on disk); run records go through
``RunWriter`` on its own thread so that nothing sits between a due time and a
job's start.  The schema carries a version and is upgraded in place by the
scripts in ``MIGRATIONS`` (see ``database.Database.apply_migrations``).
"""

import json
import logging
import sqlite3
import time

from .database import Database
from .errors import StoreError
from .native import Empty, Lock, SimpleQueue, sleep, start_thread

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"

MIGRATIONS = [
    # 1: first schema
    """
    CREATE TABLE job_settings (
        job TEXT PRIMARY KEY,
        interval_seconds INTEGER,
        paused INTEGER NOT NULL DEFAULT 0,
        updated_at REAL,
        updated_by TEXT
    );
    CREATE TABLE job_state (
        job TEXT PRIMARY KEY,
        last_started_at REAL,
        last_finished_at REAL,
        last_duration REAL,
        last_outcome TEXT,
        last_error TEXT,
        last_traceback TEXT,
        last_slot REAL,
        next_run REAL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        job TEXT NOT NULL,
        slot REAL,
        trigger TEXT NOT NULL,
        user TEXT,
        owner TEXT,
        started_at REAL NOT NULL,
        finished_at REAL,
        duration REAL,
        outcome TEXT NOT NULL,
        error TEXT,
        traceback TEXT,
        log TEXT,
        result TEXT
    );
    CREATE UNIQUE INDEX runs_job_slot ON runs (job, slot) WHERE slot IS NOT NULL;
    CREATE INDEX runs_job_started ON runs (job, started_at DESC);
    CREATE INDEX runs_outcome ON runs (outcome);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        user TEXT,
        job TEXT NOT NULL,
        action TEXT NOT NULL,
        old_value TEXT,
        new_value TEXT
    );
    CREATE INDEX audit_at ON audit (at DESC);
    CREATE TABLE lease (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        renewed_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # 2: let every process of the app see the scheduler's live state and send it controls
    """
    ALTER TABLE job_settings ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE job_settings ADD COLUMN origin TEXT;
    CREATE INDEX job_settings_seq ON job_settings (seq);
    CREATE TABLE job_live (
        job TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE INDEX job_live_seq ON job_live (seq);
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        action TEXT NOT NULL,
        user TEXT,
        at REAL NOT NULL,
        origin TEXT
    );
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO counters (name, value) VALUES ('changes', 0);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class Store(Database):
    """The scheduler's tables in the app's database file; safe to share between threads."""

    def migrate(self):
        """Create or upgrade the scheduler's tables; refuse a file that is not usable."""
        return self.apply_migrations("scheduler", MIGRATIONS)

    def schema_version(self):
        return self.component_version("scheduler")

    # -- overrides and audit ------------------------------------------------------

    def load_settings(self):
        """{job: {"interval": seconds or None, "paused": bool}} for every overridden job."""
        rows = self._read("SELECT job, interval_seconds, paused FROM job_settings")
        return {
            r["job"]: {"interval": r["interval_seconds"], "paused": bool(r["paused"])} for r in rows
        }

    def save_control(self, job, plan, *, at, user, action, origin=None, **changes):
        """Save one control of ``job`` atomically: the override it changes (``paused``
        and/or ``interval_seconds``, None for the default interval), the job's next
        slot and the audit line.

        The job's saved overrides are read inside the same write transaction, so a
        control saved meanwhile by another process is neither undone nor misreported:
        ``plan(saved, new)`` gets both as {"paused", "interval_seconds"} and returns
        (next_run, old_value, new_value) for the job state and the audit line.
        Returns (saved, new, next_run)."""

        def write(conn):
            row = conn.execute(
                "SELECT interval_seconds, paused FROM job_settings WHERE job = ?", (job,)
            ).fetchone()
            saved = {
                "paused": bool(row["paused"]) if row else False,
                "interval_seconds": row["interval_seconds"] if row else None,
            }
            new = dict(saved, **changes)
            next_run, old_value, new_value = plan(saved, new)
            conn.execute(
                "INSERT INTO job_settings"
                " (job, interval_seconds, paused, updated_at, updated_by, seq, origin)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job) DO UPDATE SET"
                " interval_seconds = excluded.interval_seconds, paused = excluded.paused,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by,"
                " seq = excluded.seq, origin = excluded.origin",
                (
                    job,
                    new["interval_seconds"],
                    int(new["paused"]),
                    at,
                    user,
                    _next_seq(conn),
                    origin,
                ),
            )
            self.save_job_state(conn, job, next_run=next_run)
            self.add_audit(conn, at, user, job, action, old_value, new_value)
            return saved, new, next_run

        return self._write(write)

    def audit_trail(self, job=None, limit=100):
        """The newest audit lines first, for one job or all."""
        if job is None:
            rows = self._read("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._read(
                "SELECT * FROM audit WHERE job = ? ORDER BY id DESC LIMIT ?", (job, limit)
            )
        return [dict(r) for r in rows]

    # -- job state and runs ---------------------------------------------------------

    def load_job_states(self):
        """{job: row dict} of the last run and next slot of every job seen before."""
        return {r["job"]: dict(r) for r in self._read("SELECT * FROM job_state")}

    def save_job_state(self, conn, job, **fields):
        """Upsert some columns of a job's state row (inside a writer transaction)."""
        columns = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        updates = ", ".join(f"{c} = excluded.{c}" for c in fields)
        conn.execute(
            f"INSERT INTO job_state (job, {columns}) VALUES (?, {marks})"
            f" ON CONFLICT (job) DO UPDATE SET {updates}",
            (job, *fields.values()),
        )

    def insert_run(self, conn, run, owner):
        conn.execute(
            "INSERT INTO runs (run_id, job, slot, trigger, user, owner, started_at, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run.id, run.job, run.slot, run.trigger, run.user, owner, run.started_at, run.outcome),
        )

    def finish_run(self, conn, run):
        conn.execute(
            "UPDATE runs SET finished_at = ?, duration = ?, outcome = ?, error = ?,"
            " traceback = ?, log = ?, result = ? WHERE run_id = ?",
            (
                run.finished_at,
                run.duration,
                run.outcome,
                run.error,
                run.traceback,
                json.dumps(run.log.lines()),
                run.result,
                run.id,
            ),
        )

    def update_run_log(self, conn, run):
        """Keep the lines a replaced run logged after it was recorded."""
        conn.execute(
            "UPDATE runs SET log = ? WHERE run_id = ?", (json.dumps(run.log.lines()), run.id)
        )

    def add_audit(self, conn, at, user, job, action, old_value, new_value):
        """Add one audit line (inside a write transaction)."""
        conn.execute(
            "INSERT INTO audit (at, user, job, action, old_value, new_value)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (at, user, job, action, _text(old_value), _text(new_value)),
        )

    def mark_interrupted_runs(self, at, except_owner=None):
        """Record every run still marked running as interrupted (its process died),
        except those of ``except_owner`` (the caller's own, still executing)."""

        def write(conn):
            rows = conn.execute(
                "SELECT run_id, job FROM runs WHERE outcome = 'running' AND owner IS NOT ?",
                (except_owner,),
            ).fetchall()
            conn.execute(
                "UPDATE runs SET outcome = 'interrupted', finished_at = ?,"
                " duration = ? - started_at,"
                " error = 'Interrupted: the server stopped during this run.'"
                " WHERE outcome = 'running' AND owner IS NOT ?",
                (at, at, except_owner),
            )
            for row in rows:
                self.save_job_state(
                    conn,
                    row["job"],
                    last_outcome="interrupted",
                    last_error="Interrupted: the server stopped during this run.",
                    last_traceback=None,
                )
            return [row["job"] for row in rows]

        return self._write(write)

    def runs(self, job, limit=20):
        """The most recent runs of a job, newest first, as dicts."""
        rows = self._read(
            "SELECT * FROM runs WHERE job = ? ORDER BY started_at DESC, id DESC LIMIT ?",
            (job, limit),
        )
        result = []
        for row in rows:
            item = dict(row)
            item["log"] = json.loads(item["log"]) if item["log"] else []
            result.append(item)
        return result

    def recent_runs(self, jobs, limit):
        """{job: [(started_at, duration, outcome), ...]} of each job's last finished runs,
        oldest first."""
        result = {}
        for job in jobs:
            rows = self._read(
                "SELECT started_at, duration, outcome FROM runs WHERE job = ?"
                " AND outcome != 'running' ORDER BY started_at DESC, id DESC LIMIT ?",
                (job, limit),
            )
            result[job] = [(r[0], r[1], r[2]) for r in reversed(rows)]
        return result

    def count_runs(self, job=None):
        if job is None:
            return self._read("SELECT count(*) FROM runs")[0][0]
        return self._read("SELECT count(*) FROM runs WHERE job = ?", (job,))[0][0]

    def prune_history(self, older_than_seconds, now=None):
        """Delete finished runs and audit lines older than the retention; return how many runs."""
        cutoff = (time.time() if now is None else now) - older_than_seconds

        def write(conn):
            deleted = conn.execute(
                "DELETE FROM runs WHERE started_at < ? AND outcome != 'running'", (cutoff,)
            ).rowcount
            conn.execute("DELETE FROM audit WHERE at < ?", (cutoff,))
            return deleted

        return self._write(write)

    def checkpoint(self):
        """Fold the write-ahead log back into the database file; report the pages moved."""
        try:
            busy, log_pages, moved = (
                self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot checkpoint the database {self.path}: {exc}") from exc
        return {"busy": bool(busy), "log_pages": log_pages, "checkpointed_pages": moved}

    def optimize(self):
        """Let SQLite refresh the statistics its query planner uses."""
        try:
            self._connection().execute("PRAGMA optimize")
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot optimize the database {self.path}: {exc}") from exc

    # -- what other processes of the app need to see --------------------------------

    def save_live(self, conn, job, data, origin):
        """Publish a job's current state (JSON-able) for the other processes."""
        conn.execute(
            "INSERT INTO job_live (job, data, origin, seq) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (job) DO UPDATE SET data = excluded.data, origin = excluded.origin,"
            " seq = excluded.seq",
            (job, json.dumps(data), origin, _next_seq(conn)),
        )

    def data_version(self):
        """A number that changes whenever another connection commits to the file."""
        return self._read("PRAGMA data_version")[0][0]

    def changes_since(self, seq, live=True):
        """(newest seq, settings rows, live rows) changed after ``seq`` (live rows only
        when ``live``: the scheduler itself has no use for them)."""
        conn = self._connection()
        try:
            conn.execute("BEGIN")
            try:
                newest = conn.execute(
                    "SELECT value FROM counters WHERE name = 'changes'"
                ).fetchone()[0]
                settings = conn.execute(
                    "SELECT job, interval_seconds, paused, origin, seq FROM job_settings"
                    " WHERE seq > ? ORDER BY seq",
                    (seq,),
                ).fetchall()
                live = conn.execute(
                    "SELECT job, data, origin, seq FROM job_live WHERE seq > ? ORDER BY seq",
                    (seq if live else 2**62,),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot read the database {self.path}: {exc}") from exc
        settings = [dict(r) for r in settings]
        live = [dict(r, data=json.loads(r["data"])) for r in live]
        return newest, settings, live

    def add_command(self, job, action, *, user, at, origin):
        """Queue a control for whichever process runs the scheduler."""

        def write(conn):
            conn.execute(
                "INSERT INTO commands (job, action, user, at, origin) VALUES (?, ?, ?, ?, ?)",
                (job, action, user, at, origin),
            )
            _next_seq(conn)  # so the scheduler's cheap look at the counter sees it

        self._write(write)

    def change_seq(self):
        """The change counter: it moves with every saved control, live state or command."""
        return self._read("SELECT value FROM counters WHERE name = 'changes'")[0][0]

    def pending_commands(self):
        """Every queued control, oldest first (each is removed when it is carried out,
        in the same transaction, or dropped)."""
        return [dict(r) for r in self._read("SELECT * FROM commands ORDER BY id")]

    def drop_command(self, command_id):
        """Forget a queued control that cannot be carried out."""
        self._write(lambda conn: conn.execute("DELETE FROM commands WHERE id = ?", (command_id,)))

    def record_manual_run(self, run, owner, next_run, *, command_id=None):
        """Record a manual run as started, with its audit line (and remove the queued
        request it carries out), in one transaction."""

        def write(conn):
            self.insert_run(conn, run, owner)
            self.save_job_state(conn, run.job, last_started_at=run.started_at, next_run=next_run)
            self.add_audit(conn, run.started_at, run.user, run.job, "run", None, run.id)
            if command_id is not None:
                conn.execute("DELETE FROM commands WHERE id = ?", (command_id,))

        self._write(write)

    # -- the scheduler lease ----------------------------------------------------------

    def acquire_lease(self, holder, now, ttl, holder_is_gone=None):
        """Take the lease if it is free, expired, already ours, or held by a process
        that ``holder_is_gone(holder)`` says has died; True if we hold it."""

        def write(conn):
            row = conn.execute(
                "SELECT holder, expires_at FROM lease WHERE name = ?", (LEASE_NAME,)
            ).fetchone()
            if row is not None and row["holder"] != holder and row["expires_at"] > now:
                if holder_is_gone is None or not holder_is_gone(row["holder"]):
                    return False
                log.warning("The scheduler %s has died; taking over its lease", row["holder"])
            acquired = now if row is None or row["holder"] != holder else None
            conn.execute(
                "INSERT INTO lease (name, holder, acquired_at, renewed_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " holder = excluded.holder, renewed_at = excluded.renewed_at,"
                " expires_at = excluded.expires_at,"
                " acquired_at = coalesce(?, lease.acquired_at)",
                (LEASE_NAME, holder, now, now, now + ttl, acquired),
            )
            return True

        return self._write(write)

    def renew_lease(self, holder, now, ttl):
        """Extend our lease; False if somebody else holds it now."""
        return self._write(
            lambda conn: (
                conn.execute(
                    "UPDATE lease SET renewed_at = ?, expires_at = ? WHERE name = ? AND holder = ?",
                    (now, now + ttl, LEASE_NAME, holder),
                ).rowcount
                == 1
            )
        )

    def release_lease(self, holder, now):
        """Give the lease up so a standby can take it at once."""
        self._write(
            lambda conn: conn.execute(
                "UPDATE lease SET expires_at = ? WHERE name = ? AND holder = ?",
                (now, LEASE_NAME, holder),
            )
        )

    def lease(self):
        """The lease row as a dict, or None if no scheduler ever ran."""
        rows = self._read("SELECT * FROM lease WHERE name = ?", (LEASE_NAME,))
        return dict(rows[0]) if rows else None


def _next_seq(conn):
    """The next number of the change counter that other processes follow."""
    conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'changes'")
    return conn.execute("SELECT value FROM counters WHERE name = 'changes'").fetchone()[0]


def _text(value):
    return None if value is None else str(value)


class RunWriter:
    """Writes run records and job state on its own native thread, in batches.

    The loop and the job threads hand it closures ``fn(conn)`` and never wait
    for the disk; a closure may return a callable, called once its writes are
    committed.  A write that fails for a reason that can clear (a full disk, a
    lock held elsewhere, an I/O error, a read-only file) is retried until it
    works, however long that takes, waiting up to ``max_delay`` between tries; a
    record that can never be written (it breaks a constraint, say) is dropped
    with a log line, and the rest are kept.  ``on_status`` is called whenever
    ``failing`` changes.
    """

    BATCH = 1000

    def __init__(self, store, *, retry_delay=0.5, max_delay=5.0, on_status=None):
        self._store = store
        self._queue = SimpleQueue()
        self._retry_delay = retry_delay
        self._max_delay = max_delay
        self._on_status = on_status
        self.batch_delay = 0.02  # seconds the first record of a batch waits for others
        self._started = False
        self._stopping = False
        self._lock = Lock()
        self.failing = False
        self.last_error = None

    def start(self):
        with self._lock:
            if not self._started:
                self._started = True
                start_thread(self._run, name="jobs-writer")

    def submit(self, fn):
        """Queue ``fn(conn)`` to run in a write transaction soon."""
        self._queue.put(fn)

    def flush(self, timeout=5.0):
        """Wait until everything submitted so far is written; True if it was."""
        if not self._started:
            self.write_pending()
            return True
        done = Lock()
        done.acquire()
        self._queue.put(done)
        return done.acquire(timeout=timeout)

    def stop(self, timeout=5.0):
        """Write what is queued (giving up on a fault after ``timeout``), then end
        the thread."""
        self._stopping = True
        self.flush(timeout)
        if self._started:
            self._queue.put(None)

    def write_pending(self):
        """Write everything queued now, on the calling thread (used when not started)."""
        batch = self._drain(block=False)
        self._write_batch([item for item in batch if callable(item) and not _is_lock(item)])
        for item in batch:
            if _is_lock(item):
                item.release()

    def _drain(self, block):
        batch = []
        try:
            first = self._queue.get() if block else self._queue.get_nowait()
            batch.append(first)
            if block and first is not None and not _is_lock(first):
                # Let the records of a busy moment gather into one transaction
                # (with 1,000 jobs a second: 50 commits a second, not 3,000).
                sleep(self.batch_delay)
            while len(batch) < self.BATCH:
                batch.append(self._queue.get_nowait())
        except Empty:
            pass
        return batch

    def _run(self):
        while True:
            batch = self._drain(block=True)
            writes = [item for item in batch if item is not None and not _is_lock(item)]
            attempts = 0
            while writes:
                try:
                    self._write_batch(writes)
                    break
                except Exception as exc:  # the writer must outlive any fault
                    attempts += 1
                    self._set_status(True, str(exc))
                    log.error("Cannot record job runs (attempt %d): %s", attempts, exc)
                    if not _can_clear(exc) or (self._stopping and attempts >= 3):
                        writes = self._write_one_by_one(writes)
                        break
                    sleep(min(self._max_delay, self._retry_delay * attempts))
            for item in batch:
                if _is_lock(item):
                    item.release()
            if any(item is None for item in batch):
                return

    def _write_batch(self, writes):
        if not writes:
            return

        committed = []  # what the writes want done once they are on disk

        def apply(conn):
            committed.clear()  # (a retry starts over)
            for index, fn in enumerate(writes, 1):
                after = fn(conn)
                if callable(after):
                    committed.append(after)
                if index % 8 == 0:
                    # Let a thread that waits for the GIL (the loop, with a job
                    # due) have it now rather than at the next switch interval.
                    sleep(0)

        self._store._write(apply)
        self._set_status(False, None)
        for after in committed:
            after()

    def _set_status(self, failing, error):
        changed = failing != self.failing
        self.failing, self.last_error = failing, error
        if changed and self._on_status is not None:
            try:
                self._on_status()
            except Exception:
                log.exception("Reporting the state of the run records failed")

    def _write_one_by_one(self, writes):
        """After repeated failures keep what can be written and log what cannot."""
        for fn in writes:
            try:
                after = self._store._write(fn)
            except Exception as exc:
                log.error("Dropped a job record that cannot be written: %s", exc)
            else:
                if callable(after):
                    after()
        return []


def _can_clear(exc):
    """Whether a failed write may work later: the disk or the lock, not the data."""
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if isinstance(exc, StoreError) and cause is None:
        return True  # the file could not be opened
    return isinstance(cause, sqlite3.OperationalError)


def _is_lock(item):
    return hasattr(item, "acquire") and hasattr(item, "release")
