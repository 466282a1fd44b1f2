"""What a job function receives: who started it, where to log, how to report progress."""

import logging
from collections import deque

MAX_LOG_LINES = 200
MAX_LINE_LENGTH = 2000
MAX_MESSAGE_LENGTH = 500


class RunLog:
    """A logger for one run: lines go to the process log and the last ones are kept
    with the run (bounded, so a job that logs megabytes keeps only its tail)."""

    def __init__(self, job_name):
        self._job_name = job_name
        self._lines = deque(maxlen=MAX_LOG_LINES)
        self.dropped = 0

    @property
    def _logger(self):
        # Looked up on the first line, not for every run: most runs log nothing.
        return logging.getLogger(f"jobs.{self._job_name}")

    def _add(self, level, message, args):
        try:
            text = str(message) % args if args else str(message)
        except (TypeError, ValueError):
            text = f"{message} {args!r}"
        self._logger.log(level, "%s", text)
        if len(self._lines) == self._lines.maxlen:
            self.dropped += 1
        if len(text) > MAX_LINE_LENGTH:
            text = text[:MAX_LINE_LENGTH] + " …[truncated]"
        self._lines.append(f"{logging.getLevelName(level)} {text}")

    def debug(self, message, *args):
        self._add(logging.DEBUG, message, args)

    def info(self, message, *args):
        self._add(logging.INFO, message, args)

    def warning(self, message, *args):
        self._add(logging.WARNING, message, args)

    def error(self, message, *args):
        self._add(logging.ERROR, message, args)

    def lines(self):
        """The kept lines, oldest first, with a note when earlier ones were dropped."""
        kept = list(self._lines)
        if self.dropped:
            kept.insert(0, f"… {self.dropped} earlier lines not kept")
        return kept


class RunContext:
    """Passed to every job function.

    - ``trigger``: ``"scheduled"`` or ``"manual"``; ``user``: who asked for a manual run.
    - ``log``: a logger (``ctx.log.info("checked %d zones", n)``) whose lines are kept.
    - ``progress(fraction, message)``: report how far the run has got (0 to 1).
    - ``cancelled``: True once the run should stop (timed out or the server is stopping);
      long jobs check it between steps.
    - ``settings``: the app's settings mapping; ``store``: the scheduler's database.
    """

    __slots__ = ("_run", "_on_progress", "settings", "store")

    def __init__(self, run, *, settings, store, on_progress):
        self._run = run
        self._on_progress = on_progress
        self.settings = settings
        self.store = store

    # Read from the run when asked: a context costs little to make for every run.
    job = property(lambda self: self._run.job)
    trigger = property(lambda self: self._run.trigger)
    user = property(lambda self: self._run.user)
    slot = property(lambda self: self._run.slot)
    log = property(lambda self: self._run.log)

    @property
    def cancelled(self):
        return self._run.cancelled

    def progress(self, fraction, message=""):
        """Report progress: ``fraction`` from 0 to 1 and a short message."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise ValueError(f"Progress is a number from 0 to 1; got {fraction!r}.")
        if fraction != fraction:  # NaN
            raise ValueError("Progress is a number from 0 to 1; got NaN.")
        fraction = min(1.0, max(0.0, float(fraction)))
        self._on_progress(self._run, fraction, str(message)[:MAX_MESSAGE_LENGTH])
