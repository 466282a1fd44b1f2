"""Versioned change events for the live page.

Every change gets the next version number.  A subscriber starts from a snapshot
taken at a version and then receives changes after it.  Its queue keeps only
the latest state per key (a job name, or the scheduler), so memory is bounded
by the number of jobs; one that lets too many changes pile up is told to
resync (fetch a fresh snapshot) instead.  ``publish`` may be called from any
thread; waiting subscribers are woken through ``native.Signal``.
"""

from dataclasses import dataclass, field

from .native import Lock, Signal

RESYNC = "resync"


@dataclass(slots=True)
class Event:
    """One change: ``kind`` is "job" or "scheduler", ``data`` the new state.

    ``encoded`` is for whoever sends the event on: a web stream encodes it once
    and every other stream sends the same bytes."""

    version: int
    kind: str
    key: str
    data: dict
    encoded: bytes | None = field(default=None, compare=False, repr=False)


class Subscription:
    """Changes for one listener, after the snapshot it started from."""

    def __init__(self, bus, snapshot, version, max_pending):
        self._bus = bus
        self.snapshot = snapshot
        self.version = version
        self._max_pending = max_pending
        self._pending = {}
        self._unread = 0
        self._resync = False
        self._signal = Signal()
        self.closed = False

    def _offer(self, event):
        """Called by the bus under its lock."""
        self._unread += 1
        if self._unread > self._max_pending:
            self._resync = True
            self._pending.clear()
            return
        self._pending.pop((event.kind, event.key), None)
        self._pending[(event.kind, event.key)] = event

    def get(self, timeout=None):
        """Events after the last ones returned, oldest first, waiting up to ``timeout``
        seconds for the first; [] if none came; ``RESYNC`` if this listener fell
        too far behind and must start over from a fresh snapshot."""
        events = self._take()
        if events or self.closed:
            return events
        self._signal.wait(timeout)
        return self._take()

    def _take(self):
        with self._bus._lock:
            if self._resync:
                self._resync = False
                self._unread = 0
                return RESYNC
            pending = self._pending
            if not pending:
                events = []
            elif len(pending) == 1:
                events = list(pending.values())
            else:
                events = sorted(pending.values(), key=_version)
            pending.clear()
            self._unread = 0
        if events:
            self.version = events[-1].version
        return events

    def close(self):
        """Stop receiving; safe to call more than once."""
        self._bus._unsubscribe(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _version(event):
    return event.version


class EventBus:
    """Hands out version numbers and delivers events to subscriptions."""

    def __init__(self, max_pending=1000):
        self._lock = Lock()
        self._subscribers = set()
        self._latest = {}  # (kind, key) -> the data of its newest event
        self.version = 0
        self.max_pending = max_pending
        self.closed = False

    def publish(self, kind, key, data):
        """Record a change and wake subscribers; returns the change's version."""
        with self._lock:
            self.version += 1
            event = Event(self.version, kind, key, data)
            self._latest[(kind, key)] = data
            subscribers = list(self._subscribers)
            for subscription in subscribers:
                subscription._offer(event)
        Signal.set_all([subscription._signal for subscription in subscribers])
        return event.version

    def set_initial(self, kind, key, data):
        """Make ``data`` the latest of (kind, key) without an event (before anyone listens)."""
        with self._lock:
            self._latest[(kind, key)] = data

    def latest(self, kind, key):
        """The data of the newest event of (kind, key), or None."""
        return self._latest.get((kind, key))

    def snapshot(self, kind, snapshot_fn):
        """``snapshot_fn(version, latest)`` with ``latest`` the newest data of every key
        of ``kind``, in the order the keys first appeared, at one version."""
        with self._lock:
            latest = [data for (k, _), data in self._latest.items() if k == kind]
            return snapshot_fn(self.version, latest)

    def subscribe(self, snapshot_fn):
        """Subscribe from now on; ``snapshot_fn(version, latest)`` (as for ``snapshot``)
        builds the starting state while no change can slip between it and the first event."""
        with self._lock:
            latest = [data for (k, _), data in self._latest.items() if k == "job"]
            snapshot = snapshot_fn(self.version, latest)
            subscription = Subscription(self, snapshot, self.version, self.max_pending)
            if self.closed:
                subscription.closed = True  # the server is stopping: snapshot only
            else:
                self._subscribers.add(subscription)
        return subscription

    def _unsubscribe(self, subscription):
        with self._lock:
            self._subscribers.discard(subscription)
            subscription.closed = True
        subscription._signal.set()

    def close_all(self):
        """End every subscription (the server is stopping)."""
        with self._lock:
            self.closed = True
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for subscription in subscribers:
            subscription.closed = True
            subscription._signal.set()

    @property
    def subscriber_count(self):
        return len(self._subscribers)
