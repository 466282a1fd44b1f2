"""A SQLite file shared by threads, greenlets and processes, with versioned schemas."""

import os
import pathlib
import sqlite3
import time

from .errors import StoreError
from .native import Lock, get_ident, sleep

BUSY_TIMEOUT_MS = 5000  # the default of JOBS_DB_BUSY_TIMEOUT, in milliseconds

# SQLite's primary result codes that an operator can act on, in their words.
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26
_DAMAGED_ADVICE = "Restore it from a backup, or move it away to start afresh."


class Database:
    """Connections to one SQLite file in WAL mode, and schema migrations.

    Each part of the app that keeps tables in the file (the scheduler, the user
    accounts) names itself as a component; its schema version is kept in the
    ``schema_versions`` table and its migrations run in order, once.
    """

    def __init__(self, path, *, busy_timeout=BUSY_TIMEOUT_MS / 1000):
        self.path = os.fspath(path)
        # How long a write waits for another connection's write lock before failing.
        self.busy_timeout = float(busy_timeout)
        self._connections = {}
        self._lock = Lock()
        self._closed = False
        # The latest write that failed (its message), until a write succeeds again.
        self.write_failure = None

    def _connection(self):
        """One connection per native thread (greenlets of one hub share theirs:
        a statement never yields, so they cannot interleave inside one)."""
        ident = get_ident()
        conn = self._connections.get(ident)
        if conn is None:
            if self._closed:
                raise StoreError(f"The database {self.path} is closed.")
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                _switch_to_wal(conn, self.busy_timeout)
                # NORMAL keeps every commit across a killed process; only power loss
                # can take the last ones back.
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.DatabaseError as exc:
                raise StoreError(self._explain("Cannot open", exc)) from exc
            with self._lock:
                self._connections[ident] = conn
        return conn

    def _write(self, fn):
        """Run ``fn(conn)`` in one IMMEDIATE transaction and return its result.

        ``write_failure`` keeps the message of the latest failed write until one
        succeeds, so the page can say that saving is failing and why."""
        try:
            conn = self._connection()
        except StoreError as exc:
            self.write_failure = str(exc)
            raise
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                _roll_back(conn)
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _roll_back(conn)
            self.write_failure = self._explain("Cannot save to", exc)
            raise StoreError(self.write_failure) from exc
        self.write_failure = None
        return result

    def _read(self, sql, params=()):
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(self._explain("Cannot read", exc)) from exc

    def _explain(self, doing, exc):
        """``exc`` in words an operator can act on: the file, what is wrong with it
        (with SQLite's own words), and what to do."""
        code = getattr(exc, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF
        if primary in (_BUSY, _LOCKED):
            problem = (
                f"another program has held its write lock for more than {self.busy_timeout:g} s"
            )
            advice = (
                "Try again; if it keeps happening, find what holds the file (a backup, a "
                "sqlite3 shell) or raise JOBS_DB_BUSY_TIMEOUT."
            )
        elif primary == _FULL:
            problem, advice = "the disk holding it is full", "Free some space on that disk."
        elif primary == _READONLY:
            problem = "it is read-only"
            advice = "Make the file, its folder and its filesystem writable for the server."
        elif primary == _IOERR:
            problem = "the disk reported an input/output error"
            advice = "Check the disk and the system log."
        elif primary in (_CORRUPT, _NOTADB):
            problem, advice = "it is not a usable SQLite file", _DAMAGED_ADVICE
        elif primary == _CANTOPEN:
            problem = "the file cannot be opened"
            advice = "Check that its folder exists and that the server may write there."
        else:
            return f"{doing} the database {self.path}: {exc}."
        return f"{doing} the database {self.path}: {problem} (SQLite: {exc}). {advice}"

    def check_usable(self):
        """Refuse a file that is not a healthy SQLite database, naming it, and never
        replace it: the operator decides what to do with it.

        The check reads the file on a read-only connection of its own, before any
        connection of ours could switch it to WAL or fold a write-ahead log into
        it: a damaged file is left exactly as it was found."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        if not os.path.exists(self.path):
            return  # a new database, created by the first connection
        try:
            conn = sqlite3.connect(
                f"{pathlib.Path(os.path.abspath(self.path)).as_uri()}?mode=ro",
                uri=True,
                timeout=self.busy_timeout,
            )
            try:
                integrity = conn.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if code is None or code & 0xFF not in (_CORRUPT, _NOTADB):
                raise StoreError(self._explain("Cannot open", exc)) from exc
            raise StoreError(
                f"The database {self.path} is not a usable SQLite file ({exc}). {_DAMAGED_ADVICE}"
            ) from exc
        if integrity != "ok":
            raise StoreError(
                f"The database {self.path} is damaged ({integrity}). {_DAMAGED_ADVICE}"
            )
        self._connection()

    def apply_migrations(self, component, migrations):
        """Bring ``component``'s tables to ``len(migrations)``; return the version found."""
        self.check_usable()
        latest = len(migrations)

        def upgrade(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions"
                " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = conn.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (component,)
            ).fetchone()
            version = row[0] if row else 0
            if version > latest:
                raise StoreError(
                    f"The database {self.path} has {component} schema version {version}, "
                    f"newer than this program's {latest}; upgrade the program."
                )
            for number in range(version, latest):
                for statement in _statements(migrations[number]):
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, latest),
            )
            return version

        return self._write(upgrade)

    def component_version(self, component):
        rows = self._read("SELECT version FROM schema_versions WHERE component = ?", (component,))
        return rows[0][0] if rows else 0

    def close(self):
        """Close every connection this object opened."""
        with self._lock:
            self._closed = True
            connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:
                pass


def _roll_back(conn):
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _switch_to_wal(conn, timeout):
    """Turn on WAL mode, retrying: when several processes open a new file at once,
    switching the journal mode fails at once with "locked", ignoring busy_timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        sleep(0.01)


def _statements(script):
    return [s.strip() for s in script.split(";") if s.strip()]
