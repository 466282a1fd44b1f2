"""The keeper thread (``jobs-keeper``): leadership and following, on one native thread.

It wakes when the lease is due for renewal, when another process commits (the
change feed), when asked (``call``), and within a second when something must be
tried again; never on a fixed tick.  It owns what ``Leadership`` and ``Follower``
own; other threads reach them only through ``call``, which runs a function on
this thread and waits for it.
"""

import logging
import time

from .native import Empty, Reply, SimpleQueue

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class Keeper:
    def __init__(self, leadership, follower):
        self.leadership = leadership
        self.follower = follower
        self.feed = None  # set by start
        self._calls = SimpleQueue()
        self._stopping = False
        self._next_lease = 0.0  # time.monotonic() of the next round of the lease

    def call(self, fn, timeout=30.0):
        """Run ``fn()`` on the keeper's thread and return what it returned."""
        reply = Reply()
        self._calls.put((fn, reply))
        self.feed.wake()
        return reply.wait(timeout)

    def stop(self):
        self._stopping = True
        self.feed.wake()

    def run(self):
        try:
            while not self._stopping:
                self._answer_calls()
                if time.monotonic() >= self._next_lease:
                    self.keep_lease()
                self._guarded(self.follower.round, "following the other processes")
                wait = self._next_lease - time.monotonic()
                if self.follower.retry_soon:
                    wait = min(wait, RETRY_SECONDS)
                if self._calls.empty():
                    self.feed.wait(max(0.0, wait))
            self._answer_calls()
        finally:
            self.leadership.release()

    def keep_lease(self):
        """One round of the lease (on this thread); after a takeover the queued
        runs are looked at at once."""
        self._guarded(self.leadership.round, "keeping the lease")
        self._next_lease = time.monotonic() + self.leadership.period()
        self.feed.discard()  # our own renewal is no news
        if self.leadership.took_over:
            self.leadership.took_over = False
            self.follower.retry_soon = True

    def _answer_calls(self):
        while True:
            try:
                fn, reply = self._calls.get_nowait()
            except Empty:
                return
            try:
                reply.set(fn())
            except Exception as exc:
                reply.fail(exc)

    @staticmethod
    def _guarded(fn, doing):
        try:
            fn()
        except Exception:  # a fault in one round must not end the keeper
            log.exception("The keeper failed %s; it carries on", doing)
