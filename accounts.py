"""User accounts and their sign-in sessions, kept in the app's database file.

Passwords are hashed with scrypt (werkzeug's default KDF).  Each sign-in gets a
random session id stored server-side, so signing out ends that session
everywhere it is used (including open event streams), and an id never
survives a new sign-in.
"""

import os
import re
import secrets
import time
from dataclasses import dataclass

from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

from scheduler.database import Database

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_PASSWORD = 8
INITIAL_PASSWORD_FILE = "initial-admin-password"

MIGRATIONS = [
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        is_admin INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE sessions (
        sid TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX sessions_user ON sessions (user_id);
    """,
]

# Checked against when the username is unknown, so both cases cost the same time.
_DUMMY_HASH = generate_password_hash("not a password of anyone")


class AccountError(ValueError):
    """A username or password that cannot be used; the message says why."""


@dataclass
class User(UserMixin):
    """A signed-in user, as flask-login sees it: its id is the session id."""

    id: int
    username: str
    is_admin: bool
    sid: str | None = None

    def get_id(self):
        return self.sid


class Accounts(Database):
    """Users and sessions in the app's database file."""

    def migrate(self):
        return self.apply_migrations("accounts", MIGRATIONS)

    def create_user(self, username, password, *, admin=False):
        """Add a user; AccountError for a taken or badly formed name or a short password."""
        _check_username(username)
        _check_password(password)
        password_hash = generate_password_hash(password)

        def write(conn):
            taken = conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone()
            if taken:
                raise AccountError(f"A user named {username!r} already exists.")
            cursor = conn.execute(
                "INSERT INTO users (username, password_hash, is_admin, created_at)"
                " VALUES (?, ?, ?, ?)",
                (username, password_hash, int(admin), time.time()),
            )
            return cursor.lastrowid

        user_id = self._write(write)
        return User(id=user_id, username=username, is_admin=admin)

    def set_password(self, username, password):
        """Replace a user's password and end all of their sessions."""
        _check_password(password)
        password_hash = generate_password_hash(password)

        def write(conn):
            row = conn.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                raise AccountError(f"No user named {username!r}.")
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, row[0]))
            conn.execute("DELETE FROM sessions WHERE user_id = ?", (row[0],))

        self._write(write)

    def users(self):
        """Every user as (username, is_admin, created_at), by name."""
        rows = self._read("SELECT username, is_admin, created_at FROM users ORDER BY username")
        return [(r["username"], bool(r["is_admin"]), r["created_at"]) for r in rows]

    def count_users(self):
        return self._read("SELECT count(*) FROM users")[0][0]

    def authenticate(self, username, password):
        """The user if the password is right, else None (same work either way)."""
        rows = self._read(
            "SELECT id, username, password_hash, is_admin FROM users WHERE username = ?",
            (username or "",),
        )
        row = rows[0] if rows else None
        valid = check_password_hash(row["password_hash"] if row else _DUMMY_HASH, password or "")
        if row is None or not valid:
            return None
        return User(id=row["id"], username=row["username"], is_admin=bool(row["is_admin"]))

    def start_session(self, user, lifetime_seconds):
        """A new random session id for ``user``, valid for ``lifetime_seconds``."""
        sid = secrets.token_urlsafe(32)
        now = time.time()

        def write(conn):
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            conn.execute(
                "INSERT INTO sessions (sid, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (sid, user.id, now, now + lifetime_seconds),
            )

        self._write(write)
        user.sid = sid
        return sid

    def end_session(self, sid):
        """Sign the session out wherever it is used."""
        self._write(lambda conn: conn.execute("DELETE FROM sessions WHERE sid = ?", (sid,)))

    def user_for_session(self, sid):
        """The user a live session belongs to, or None if it ended or expired."""
        if not sid:
            return None
        rows = self._read(
            "SELECT users.id, username, is_admin FROM sessions JOIN users"
            " ON users.id = sessions.user_id WHERE sid = ? AND expires_at > ?",
            (sid, time.time()),
        )
        if not rows:
            return None
        row = rows[0]
        return User(id=row["id"], username=row["username"], is_admin=bool(row["is_admin"]), sid=sid)

    def ensure_initial_admin(self, instance_path):
        """On the very first start, create ``admin`` with a random password, write it
        to a 0600 file in the instance folder and return it; later, return None."""
        if self.count_users():
            return None
        password = secrets.token_urlsafe(12)
        self.create_user("admin", password, admin=True)
        path = os.path.join(instance_path, INITIAL_PASSWORD_FILE)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        os.chmod(path, 0o600)
        return password


def _check_username(username):
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise AccountError(
            "A username is 1-64 letters, digits or . _ @ -, starting with a letter or digit."
        )


def _check_password(password):
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(f"A password needs at least {MIN_PASSWORD} characters.")
