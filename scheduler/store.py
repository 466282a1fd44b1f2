"""The scheduler's SQLite database, the first implementation of ``storage.Storage``.

One file in WAL mode, opened by every process of the app: overrides, last runs,
history, audit, the lease, queued commands and the live states other processes
follow.  Controls write synchronously (an acknowledged change is on disk); run
records arrive in batches from ``writer.RunWriter``.  The schema carries a version
and is upgraded in place by ``sqlite_schema.MIGRATIONS``.

Safe to share between threads: each native thread has its own connection.
"""

import json
import logging
import sqlite3
import time

from . import sqlite_records as records
from .database import Database
from .errors import StoreError
from .sqlite_feed import SqliteChangeFeed
from .sqlite_lease import SqliteLease
from .sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from .storage import Command, Setting

log = logging.getLogger(__name__)

LEASE_NAME = records.LEASE_NAME
__all__ = ["LEASE_NAME", "SCHEMA_VERSION", "Store"]


class Store(SqliteLease, Database):
    """The scheduler's tables in the app's database file."""

    def migrate(self):
        """Create or upgrade the scheduler's tables; refuse a file that is not usable."""
        return self.apply_migrations("scheduler", MIGRATIONS)

    def schema_version(self):
        return self.component_version("scheduler")

    def change_feed(self):
        return SqliteChangeFeed(self)

    # -- loading ------------------------------------------------------------------

    def load_settings(self):
        """{job: Setting} for every job whose settings were ever saved."""
        rows = self._read("SELECT job, interval_seconds, paused, seq, origin FROM job_settings")
        return {r["job"]: _setting(r) for r in rows}

    def load_job_states(self):
        """{job: row dict} of the last run and next slot of every job seen before."""
        return {r["job"]: dict(r) for r in self._read("SELECT * FROM job_state")}

    def recent_runs(self, jobs, limit):
        """{job: [(started_at, duration, outcome), ...]} of each job's last finished
        runs, oldest first."""
        result = {}
        for job in jobs:
            rows = self._read(
                "SELECT started_at, duration, outcome FROM runs WHERE job = ?"
                " AND outcome != 'running' ORDER BY started_at DESC, id DESC LIMIT ?",
                (job, limit),
            )
            result[job] = [(r[0], r[1], r[2]) for r in reversed(rows)]
        return result

    def mark_interrupted_runs(self, at, except_owner=None):
        """Record every run still marked running as interrupted (its process died),
        except those of ``except_owner``; return the jobs concerned."""

        def write(conn):
            rows = conn.execute(
                "SELECT run_id, job FROM runs WHERE outcome = 'running' AND owner IS NOT ?",
                (except_owner,),
            ).fetchall()
            conn.execute(
                "UPDATE runs SET outcome = 'interrupted', finished_at = ?,"
                " duration = ? - started_at, error = ?"
                " WHERE outcome = 'running' AND owner IS NOT ?",
                (at, at, records.INTERRUPTED_ERROR, except_owner),
            )
            for row in rows:
                records.save_job_state(
                    conn,
                    row["job"],
                    last_outcome="interrupted",
                    last_error=records.INTERRUPTED_ERROR,
                    last_traceback=None,
                )
            return [row["job"] for row in rows]

        return self._write(write)

    # -- controls -------------------------------------------------------------------

    def save_control(self, job, *, at, user, action, origin, describe, **changes):
        """Save one control of ``job`` with its audit line, atomically, and return
        the job's saved ``Setting`` with the change's ``seq``.

        Only the setting the control changes (``paused`` or ``interval_seconds``)
        is written, over the saved row read in the same transaction, so a control
        saved meanwhile by another process is neither undone nor misreported:
        ``describe(saved, new)`` gives the audit line's (old, new) texts."""

        def write(conn):
            row = conn.execute(
                "SELECT interval_seconds, paused FROM job_settings WHERE job = ?", (job,)
            ).fetchone()
            saved = {
                "paused": bool(row["paused"]) if row else False,
                "interval_seconds": row["interval_seconds"] if row else None,
            }
            new = dict(saved, **changes)
            seq = records.next_seq(conn)
            conn.execute(
                "INSERT INTO job_settings"
                " (job, interval_seconds, paused, updated_at, updated_by, seq, origin)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job) DO UPDATE SET"
                " interval_seconds = excluded.interval_seconds, paused = excluded.paused,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by,"
                " seq = excluded.seq, origin = excluded.origin",
                (job, new["interval_seconds"], int(new["paused"]), at, user, seq, origin),
            )
            records.add_audit(conn, at, user, job, action, *describe(saved, new))
            return Setting(job, bool(new["paused"]), new["interval_seconds"], seq, origin)

        return self._write(write)

    def record_manual_run(self, start, *, owner, command_id=None):
        """Record a Run Now as started, with its audit line, in one transaction that
        checks the lease epoch (``LeaseLostError``) and claims ``command_id``."""
        self._write(lambda conn: records.record_manual_run(conn, start, owner, command_id))

    def propose_next_run(self, job, next_run, *, seq):
        """Save ``job``'s next slot as a process that does not run the scheduler sees
        it after the control ``seq`` it saved, unless a newer control came since."""

        def write(conn):
            row = conn.execute("SELECT seq FROM job_settings WHERE job = ?", (job,)).fetchone()
            if row is not None and row["seq"] == seq:
                records.save_job_state(conn, job, next_run=next_run)

        self._write(write)

    def refuse_manual_run(self, run_id, *, reason):
        """Take back a recorded Run Now that the scheduler then refused: its run is
        removed and its audit line says why."""
        self._write(lambda conn: records.refuse_manual_run(conn, run_id, reason))

    def add_command(self, job, action, *, user, at, origin):
        """Queue a control for whichever process runs the scheduler."""

        def write(conn):
            conn.execute(
                "INSERT INTO commands (job, action, user, at, origin) VALUES (?, ?, ?, ?, ?)",
                (job, action, user, at, origin),
            )
            records.next_seq(conn)  # so the scheduler's look at the counter sees it

        self._write(write)

    def pending_commands(self):
        """Every queued command, oldest first."""
        return [Command(**dict(r)) for r in self._read("SELECT * FROM commands ORDER BY id")]

    def refuse_command(self, command_id, *, at, reason):
        """Drop a queued command with an audit line saying why; False if it was gone."""
        return self._write(lambda conn: records.refuse_command(conn, command_id, at, reason))

    def audit_trail(self, job=None, limit=100):
        """The newest audit lines first, for one job or all."""
        if job is None:
            rows = self._read("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._read(
                "SELECT * FROM audit WHERE job = ? ORDER BY id DESC LIMIT ?", (job, limit)
            )
        return [dict(r) for r in rows]

    # -- records from the run writer ------------------------------------------------

    def write_records(self, batch, owner, replaying=False):
        """Write a batch of records in one transaction (see ``storage``)."""
        return self._write(lambda conn: records.write_records(conn, batch, owner, replaying))

    # -- history ----------------------------------------------------------------------

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

    # -- the change feed's reads --------------------------------------------------------

    def data_version(self):
        """A number that changes whenever another connection commits to the file."""
        return self._read("PRAGMA data_version")[0][0]

    def change_seq(self):
        """The change counter: it moves with every saved control, live state or command."""
        return self._read("SELECT value FROM counters WHERE name = 'changes'")[0][0]

    def changes_since(self, seq, live=True):
        """(newest seq, [Setting], [live rows]) changed after ``seq``, read in one
        transaction (live rows only when ``live``)."""
        conn = self._connection()
        try:
            conn.execute("BEGIN")
            try:
                newest = conn.execute(
                    "SELECT value FROM counters WHERE name = 'changes'"
                ).fetchone()[0]
                settings = conn.execute(
                    "SELECT job, interval_seconds, paused, seq, origin FROM job_settings"
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
            raise StoreError(self._explain("Cannot read", exc)) from exc
        return newest, [_setting(r) for r in settings], live


def _setting(row):
    return Setting(
        row["job"], bool(row["paused"]), row["interval_seconds"], row["seq"], row["origin"]
    )
