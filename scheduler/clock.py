"""Where the scheduler reads the time.  Tests pass a ManualClock and move it by hand."""

import time
from datetime import UTC, datetime


class SystemClock:
    """The real clock: wall time for records and slots, monotonic time for waits."""

    def now(self):
        """Seconds since the epoch (UTC)."""
        return time.time()

    def monotonic(self):
        """Seconds on a clock that never jumps."""
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told; both readings advance together."""

    def __init__(self, start=None):
        if start is None:
            start = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC).timestamp()
        self._now = float(start)
        self._monotonic = 1000.0
        self._listeners = []

    def on_advance(self, callback):
        """Call ``callback()`` after every ``advance`` (an engine's loop wakes up)."""
        self._listeners.append(callback)

    def now(self):
        return self._now

    def monotonic(self):
        return self._monotonic

    def advance(self, seconds):
        """Move the clock forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("A clock only moves forward.")
        self._now += seconds
        self._monotonic += seconds
        for callback in list(self._listeners):
            callback()


def to_datetime(timestamp):
    """An aware UTC datetime for an epoch timestamp, or None for None."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC)


def to_iso(timestamp):
    """ISO 8601 UTC with milliseconds and a Z (``2026-11-25T17:38:12.345Z``), or None."""
    if timestamp is None:
        return None
    whole = int(timestamp // 1)
    millis = int((timestamp - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"
