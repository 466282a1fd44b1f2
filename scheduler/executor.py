"""A pool of native worker threads for job bodies.

Job bodies never run on the loop and never on a greenlet: a CPU-bound or
blocking job holds only its own OS thread.  Threads are started on demand when
no worker is idle (up to ``max_workers``) and exit after ``idle_timeout`` seconds
with nothing to do.
"""

import logging

from .native import Empty, Lock, SimpleQueue, start_thread

log = logging.getLogger(__name__)


class NativeExecutor:
    """Runs submitted callables on native threads."""

    def __init__(self, max_workers=32, idle_timeout=60.0, name="jobs-worker"):
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1.")
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self._name = name
        self._queue = SimpleQueue()
        self._lock = Lock()
        self._workers = 0
        self._idle = 0  # workers waiting for a task that no queued task is meant for
        self._backlog = 0  # tasks queued while every worker was busy
        self._shutdown = False

    def submit(self, fn):
        """Run ``fn()`` on a worker thread as soon as one is free."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("The executor is shut down.")
            start = False
            if self._idle > 0:
                self._idle -= 1  # an idle worker will take it
            elif self._workers < self.max_workers:
                self._workers += 1
                start = True
            else:
                self._backlog += 1  # the next worker to finish takes it
            self._queue.put(fn)
        if start:
            start_thread(self._work, name=self._name)

    def _work(self):
        while True:
            try:
                fn = self._queue.get(timeout=self.idle_timeout)
            except Empty:
                with self._lock:
                    if self._idle > 0:
                        self._idle -= 1
                        self._workers -= 1
                        return
                    continue  # every waiting worker has a task coming; so do we
            if fn is None:
                with self._lock:
                    self._workers -= 1
                return
            try:
                fn()
            except BaseException:  # a task must never take its worker down
                log.exception("A job task raised outside its own handler")
            with self._lock:
                if self._backlog > 0:
                    self._backlog -= 1
                else:
                    self._idle += 1

    @property
    def worker_count(self):
        return self._workers

    def shutdown(self):
        """Let the workers exit once the queued tasks are done."""
        with self._lock:
            self._shutdown = True
            count = self._workers
        for _ in range(count):
            self._queue.put(None)
