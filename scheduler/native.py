"""Real OS threads, locks and queues, even in a gevent-monkey-patched process.

Under gunicorn's gevent worker ``threading`` gives greenlets, and a CPU-bound job
on a greenlet stalls every request.  The scheduler therefore takes the original
``_thread`` functions and the C ``SimpleQueue`` (which gevent does not replace)
and uses them for its loop, its workers and the locks they share.  Code on the
gevent hub may take these locks only for short, non-blocking sections.

``Signal`` is the one place where a native thread has to wake a greenlet: it
uses ``loop.run_callback_threadsafe``, the gevent-documented way to reach the hub
from another thread.
"""

from _queue import Empty, SimpleQueue

try:
    from gevent import monkey as _monkey
except ImportError:  # gevent is a dependency, but the engine does not need it
    _monkey = None

if _monkey is not None:
    start_new_thread, allocate_lock, get_ident = _monkey.get_original(
        "_thread", ("start_new_thread", "allocate_lock", "get_ident")
    )
    sleep = _monkey.get_original("time", "sleep")
else:
    from _thread import allocate_lock, get_ident, start_new_thread
    from time import sleep

__all__ = [
    "Empty",
    "Lock",
    "Reply",
    "Signal",
    "SimpleQueue",
    "get_ident",
    "is_gevent_patched",
    "sleep",
    "start_thread",
]

Lock = allocate_lock


def is_gevent_patched():
    """True when gevent has monkey-patched ``threading`` in this process."""
    return _monkey is not None and _monkey.is_module_patched("threading")


def start_thread(target, name=None):
    """Start ``target()`` on a new native OS thread and return the thread's ident.

    The thread is named for ``ps``-like tools and for log lines when possible.
    """

    def bootstrap():
        if name:
            _set_native_thread_name(name)
        target()

    return start_new_thread(bootstrap, ())


def _load_pthread_setname():
    """pthread_setname_np from the C library already in the process, or None.

    Looked up once at import: finding a library by name runs ldconfig in a
    subprocess, which must not happen on a fresh native thread in a gevent process.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.pthread_self.restype = ctypes.c_ulong
        setname = libc.pthread_setname_np
        setname.argtypes = [ctypes.c_ulong, ctypes.c_char_p]
        return lambda name: setname(libc.pthread_self(), name[:15].encode())
    except (OSError, AttributeError):
        return None


_pthread_setname = _load_pthread_setname()


def _set_native_thread_name(name):
    if _pthread_setname is not None:
        _pthread_setname(name)


class Signal:
    """A flag that any thread may set and that the creating thread waits on.

    Created inside a gevent hub's thread it is a gevent ``Event`` woken through
    the hub (so waiting greenlets do not block the hub); elsewhere it is a real
    lock-free queue wait on the native thread.
    """

    def __init__(self):
        self._hub = None
        if is_gevent_patched():
            import gevent
            from gevent.event import Event

            hub = gevent.get_hub()
            if hub.thread_ident == get_ident():
                self._hub = hub
                self._event = Event()
                return
        self._queue = SimpleQueue()

    def set(self):
        """Wake the waiter; safe from any thread."""
        if self._hub is not None:
            if get_ident() == self._hub.thread_ident:
                self._event.set()
            else:
                self._hub.loop.run_callback_threadsafe(self._event.set)
            return
        self._queue.put(None)

    @staticmethod
    def set_all(signals):
        """``set()`` each of ``signals``, reaching each gevent hub once for all its
        signals (one callback into the hub, not one per waiting greenlet)."""
        by_hub = {}
        here = get_ident()
        for signal in signals:
            hub = signal._hub
            if hub is None:
                signal._queue.put(None)
            elif hub.thread_ident == here:
                signal._event.set()
            else:
                by_hub.setdefault(hub, []).append(signal._event)
        for hub, events in by_hub.items():
            hub.loop.run_callback_threadsafe(_set_events, events)

    def wait(self, timeout=None):
        """Wait until set or ``timeout`` seconds pass; return True if set.  Clears the flag."""
        if self._hub is not None:
            fired = self._event.wait(timeout)
            self._event.clear()
            return bool(fired)
        try:
            self._queue.get(timeout=timeout)
        except Empty:
            return False
        while True:  # coalesce every set() that came before this wake
            try:
                self._queue.get_nowait()
            except Empty:
                return True


def _set_events(events):
    for event in events:
        event.set()


_off_hub_pool = None
OFF_HUB_THREADS = 8


def call_off_hub(fn, *args, **kwargs):
    """Call ``fn`` so that it cannot stall a gevent hub: from the hub's thread it runs
    on a dedicated pool of native threads while the calling greenlet waits (every
    other greenlet, every open stream, keeps going); anywhere else it is just called.

    For work that may block: a database write waiting on a lock, password hashing.
    """
    global _off_hub_pool
    if not is_gevent_patched():
        return fn(*args, **kwargs)
    import gevent

    if gevent.get_hub().thread_ident != get_ident():
        return fn(*args, **kwargs)
    if _off_hub_pool is None:
        from gevent.threadpool import ThreadPool

        # Not the hub's own pool: that one also resolves host names for gevent.
        _off_hub_pool = ThreadPool(OFF_HUB_THREADS)
    return _off_hub_pool.apply(fn, args, kwargs)


class Reply:
    """The answer to a message sent to another thread: set once there, waited for here."""

    __slots__ = ("_done", "value", "error")

    def __init__(self):
        self._done = allocate_lock()
        self._done.acquire()
        self.value = self.error = None

    def set(self, value=None):
        self.value = value
        self._done.release()

    def fail(self, error):
        self.error = error
        self._done.release()

    def wait(self, timeout):
        """The value, or the error raised here; TimeoutError if no answer came in time."""
        if not self._done.acquire(timeout=timeout):
            raise TimeoutError("The scheduler did not answer in time.")
        if self.error is not None:
            raise self.error
        return self.value
