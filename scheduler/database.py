"""A SQLite file shared by threads, greenlets and processes, with versioned schemas."""

import os
import sqlite3
import time

from .errors import StoreError
from .native import Lock, get_ident, sleep

BUSY_TIMEOUT_MS = 5000


class Database:
    """Connections to one SQLite file in WAL mode, and schema migrations.

    Each part of the app that keeps tables in the file (the scheduler, the user
    accounts) names itself as a component; its schema version is kept in the
    ``schema_versions`` table and its migrations run in order, once.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._connections = {}
        self._lock = Lock()
        self._closed = False

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
                    timeout=BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                _switch_to_wal(conn)
                # NORMAL keeps every commit across a killed process; only power loss
                # can take the last ones back.
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"Cannot open the database {self.path}: {exc}") from exc
            with self._lock:
                self._connections[ident] = conn
        return conn

    def _write(self, fn):
        """Run ``fn(conn)`` in one IMMEDIATE transaction and return its result."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot write to the database {self.path}: {exc}") from exc

    def _read(self, sql, params=()):
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot read the database {self.path}: {exc}") from exc

    def check_usable(self):
        """Refuse a file that is not a healthy SQLite database, naming it, and never
        replace it: the operator decides what to do with it."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        try:
            integrity = self._connection().execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"The database {self.path} is not a usable SQLite file ({exc}); "
                "restore it from a backup or move it away to start afresh."
            ) from exc
        if integrity != "ok":
            raise StoreError(
                f"The database {self.path} is damaged ({integrity}); "
                "restore it from a backup or move it away to start afresh."
            )

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


def _switch_to_wal(conn):
    """Turn on WAL mode, retrying: when several processes open a new file at once,
    switching the journal mode fails at once with "locked", ignoring busy_timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
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
