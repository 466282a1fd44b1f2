"""Wake up when another process commits to the database, instead of polling it.

Every commit in WAL mode writes to the ``-wal`` file beside the database, so a
Linux inotify watch on the database's folder, filtered to that file and the
database itself, tells a waiting thread at once that something changed: a
control saved by another worker reaches this one's streams in milliseconds, and
an idle process does not wake up to look.  Where inotify is not available
(another system, or no watch left), ``FileWatch.open`` returns None and the
engine looks at the database on a timer instead.

Waiting uses the original ``select`` even under gevent: the watch lives on a
native thread.
"""

import ctypes
import errno
import logging
import os
import struct

try:
    from gevent import monkey as _monkey
except ImportError:
    _monkey = None

if _monkey is not None:
    _select = _monkey.get_original("select", "select")
else:
    from select import select as _select

log = logging.getLogger(__name__)

_IN_MODIFY = 0x00000002
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_Q_OVERFLOW = 0x00004000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, length of the name


class FileWatch:
    """Changes to some files of one folder, seen through inotify."""

    def __init__(self, fd, names, wake_read, wake_write):
        self._fd = fd
        self._names = names
        self._wake_read, self._wake_write = wake_read, wake_write
        self.closed = False

    @classmethod
    def open(cls, database_path):
        """A watch on ``database_path`` and its WAL file, or None where the system
        cannot watch files (the caller then polls)."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init, add_watch = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError):
            return None
        add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = init(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            log.info(
                "Cannot watch the database for changes (%s); polling it instead",
                os.strerror(ctypes.get_errno()),
            )
            return None
        path = os.path.abspath(database_path)
        folder, name = os.path.split(path)
        mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
        if add_watch(fd, os.fsencode(folder), mask) < 0:
            log.info(
                "Cannot watch %s for changes (%s); polling it instead",
                folder,
                os.strerror(ctypes.get_errno()),
            )
            os.close(fd)
            return None
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        names = {os.fsencode(name), os.fsencode(name + "-wal")}
        return cls(fd, names, wake_read, wake_write)

    def wait(self, timeout):
        """Wait up to ``timeout`` seconds for a change; True if the database changed
        (or ``wake()`` was called), False on timeout."""
        if self.closed:
            return True
        try:
            ready, _, _ = _select([self._fd, self._wake_read], [], [], max(0.0, timeout))
        except (OSError, ValueError):  # closed meanwhile
            return True
        changed = False
        if self._wake_read in ready:
            _drain(self._wake_read)
            changed = True
        if self._fd in ready:
            changed = self._read_events() or changed
        return changed

    def discard(self):
        """Forget changes seen so far (this process's own writes, say)."""
        if not self.closed:
            self._read_events()

    def wake(self):
        """Make a ``wait`` in progress return now; safe from any thread."""
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.wake()
        for fd in (self._fd, self._wake_read, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass

    def _read_events(self):
        changed = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return changed
                raise
            if not data:
                return changed
            offset = 0
            while offset + _EVENT_HEADER.size <= len(data):
                _, mask, _, length = _EVENT_HEADER.unpack_from(data, offset)
                start = offset + _EVENT_HEADER.size
                name = data[start : start + length].rstrip(b"\0")
                offset = start + length
                if name in self._names or mask & _IN_Q_OVERFLOW:
                    changed = True


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
