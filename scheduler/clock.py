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

    def wait_seconds(self, delay, wake):
        """How long (real seconds) a thread may block before it has work ``delay``
        seconds from now on this clock (None: nothing timed)."""
        return delay


class ManualClock:
    """A clock that moves only when told; both readings advance together."""

    def __init__(self, start=None):
        if start is None:
            start = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC).timestamp()
        self._now = float(start)
        self._monotonic = 1000.0
        self._alarms = {}  # wake callback -> monotonic time at which to call it

    def wait_seconds(self, delay, wake):
        """A thread that has work ``delay`` seconds from now blocks until woken: the
        clock calls ``wake()`` once ``advance`` reaches that moment.  Only the last
        alarm asked for by each ``wake`` counts."""
        if delay is None:
            self._alarms.pop(wake, None)
            return None
        if delay <= 0:
            return 0.0
        self._alarms[wake] = self._monotonic + delay
        return None

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
        for wake, at in list(self._alarms.items()):
            if at <= self._monotonic and self._alarms.get(wake) == at:
                del self._alarms[wake]
                wake()


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
