"""The change feed of the SQLite store: what other processes saved, and a wait that
ends when they save something.

Waiting uses ``FileWatch`` (inotify on the database and its WAL file); where files
cannot be watched it looks every ``poll_interval`` seconds.  A look costs one
``PRAGMA data_version`` unless another connection committed, then one read of the
change counter unless it moved, then one transaction reading the rows after the
cursor.  The counter is taken inside every write transaction, and SQLite has one
writer at a time, so its order is commit order: no late committer is skipped.

Owned by the thread that follows (the keeper); ``wake`` may be called from any thread.
"""

import json

from .filewatch import FileWatch
from .native import Empty, SimpleQueue
from .storage import Changes, LiveChange


class SqliteChangeFeed:
    def __init__(self, store, poll_interval=0.5):
        self._store = store
        self.poll_interval = poll_interval
        self._watch = FileWatch.open(store.path)
        self._wakes = SimpleQueue()
        self._data_version = None

    def wait(self, timeout):
        """Wait up to ``timeout`` seconds for a change or a ``wake()``."""
        if self._watch is not None:
            return self._watch.wait(timeout)
        try:
            self._wakes.get(timeout=max(0.0, min(timeout, self.poll_interval)))
        except Empty:
            pass
        return True

    def wake(self):
        if self._watch is not None:
            self._watch.wake()
        else:
            self._wakes.put(None)

    def discard(self):
        """Forget file changes seen so far (this process's own lease renewal)."""
        if self._watch is not None:
            self._watch.discard()

    def changes_since(self, cursor, live=True):
        """What was saved after ``cursor`` (None: nothing since the last look).
        ``live``: also the live states (the scheduler has no use for them)."""
        version = self._store.data_version()
        if version == self._data_version and cursor is not None:
            return None  # nothing at all was committed by another connection
        self._data_version = version
        if cursor is not None and self._store.change_seq() == cursor:
            return None  # only lease renewals and run records
        newest, settings, live_rows = self._store.changes_since(cursor or 0, live=live)
        live_changes = tuple(
            LiveChange(r["job"], json.loads(r["data"]), r["seq"], r["origin"]) for r in live_rows
        )
        return Changes(
            cursor=newest,
            settings=tuple(settings),
            live=live_changes,
            commands=cursor is None or newest != cursor,
        )

    def close(self):
        if self._watch is not None:
            self._watch.close()
