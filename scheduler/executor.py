"""A pool of native worker threads for job bodies.

Job bodies never run on the loop and never on a greenlet: a CPU-bound or
blocking job holds only its own OS thread.

Tasks wait in one shared queue.  A worker that takes a task while others are
still waiting first wakes one more worker (or starts one, up to
``max_workers``), so a body that blocks never holds up the tasks behind it;
while bodies return quickly, the workers already awake take task after task
without a thread switch each.  When 1,000 jobs fall due together this is what
lets the last of them start within milliseconds.  Workers exit after
``idle_timeout`` seconds with nothing to do.
"""

import logging
from collections import deque

from .native import Lock, start_thread

log = logging.getLogger(__name__)


class NativeExecutor:
    """Runs submitted callables on native threads."""

    def __init__(self, max_workers=32, idle_timeout=60.0, name="jobs-worker", on_drained=None):
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1.")
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self._name = name
        self._on_drained = on_drained  # called when a worker takes the last queued task
        self._tasks = deque()
        self._lock = Lock()
        self._sleepers = []  # one held lock per idle worker; releasing it wakes that worker
        self._workers = 0
        self._waking = False  # a worker is being woken or started and has not taken a task yet
        self._shutdown = False

    def submit(self, fn):
        """Run ``fn()`` on a worker thread as soon as one is free."""
        self.submit_all((fn,))

    def submit_all(self, fns):
        """Run each of ``fns`` on a worker thread, in order, as soon as workers are free."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("The executor is shut down.")
            self._tasks.extend(fns)
            start = bool(self._tasks) and self._wake_one_locked()
        if start:
            start_thread(self._work, name=self._name)

    def pending(self):
        """How many tasks wait for a worker."""
        return len(self._tasks)

    @property
    def worker_count(self):
        return self._workers

    def shutdown(self):
        """Let the workers exit once the queued tasks are done."""
        with self._lock:
            self._shutdown = True
            sleepers, self._sleepers = self._sleepers, []
        for sleeper in sleepers:
            sleeper.release()

    def _wake_one_locked(self):
        """Wake an idle worker, or say that a new one must be started (True)."""
        if self._waking:
            return False  # that worker wakes the next one when it takes its task
        if self._sleepers:
            self._waking = True
            self._sleepers.pop().release()  # the most recently idle: its stack is warm
            return False
        if self._workers < self.max_workers:
            self._waking = True
            self._workers += 1
            return True
        return False  # every worker is busy; the next one free takes the task

    def _work(self):
        sleeper = Lock()
        just_woken = True  # started, or woken by _wake_one_locked
        while True:
            with self._lock:
                while True:
                    if just_woken:
                        self._waking = False  # even with no task left: the next wake may go
                        just_woken = False
                    if self._tasks:
                        break
                    if self._shutdown:
                        self._workers -= 1
                        return
                    sleeper.acquire()
                    self._sleepers.append(sleeper)
                    self._lock.release()
                    try:
                        woken = sleeper.acquire(timeout=self.idle_timeout)
                    finally:
                        self._lock.acquire()
                    if woken:
                        sleeper.release()
                    elif sleeper in self._sleepers:  # idle for too long and nobody woke us
                        self._sleepers.remove(sleeper)
                        sleeper.release()
                        self._workers -= 1
                        return
                    # else: woken just as the wait timed out (the lock is released)
                    just_woken = True
                fn = self._tasks.popleft()
                start = bool(self._tasks) and self._wake_one_locked()
                drained = not self._tasks
            if start:
                start_thread(self._work, name=self._name)
            if drained and self._on_drained is not None:
                self._on_drained()
            try:
                fn()
            except BaseException:  # a task must never take its worker down
                log.exception("A job task raised outside its own handler")
