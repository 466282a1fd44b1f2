"""The run writer: records of runs and job states, written in batches on a thread of
its own, so nothing sits between a due slot and a job's start.

Owns its queue, the batch it is writing, and the set of records not yet committed
(``unsaved``, read by any thread under its lock).  The loop and the controls call
``submit``; the writer thread (``jobs-writer``) alone writes.

A batch that fails for a reason that can clear (a full disk, a lock held elsewhere,
an I/O error, a read-only file) is retried until it works, however long that takes.
One that can never be written whole is written record by record and only the
records that still fail are dropped, each with a log line.  At shutdown, records
that cannot be written before the deadline are kept in a file beside the database
(``unsaved-records-*.jsonl``, said so in the log) and written at the next start.
"""

import dataclasses
import glob
import json
import logging
import os
import sqlite3
import time
import uuid

from .errors import StoreError
from .native import Empty, Lock, SimpleQueue, sleep, start_thread
from .storage import RECORD_TYPES, RunFinished, RunStarted

log = logging.getLogger(__name__)

SPOOL_PATTERN = "unsaved-records-*.jsonl"


class RunWriter:
    BATCH = 1000

    def __init__(
        self,
        store,
        owner,
        *,
        spool_dir=None,
        retry_delay=0.5,
        max_delay=5.0,
        on_status=None,
        on_fenced=None,
    ):
        self._store = store
        self._owner = owner
        self._spool_dir = spool_dir
        self._queue = SimpleQueue()
        self._hurry = SimpleQueue()  # a flush ends the wait for a batch to gather
        self._retry_delay = retry_delay
        self._max_delay = max_delay
        self._on_status = on_status
        self._on_fenced = on_fenced
        self.batch_delay = 0.02  # seconds the first record of a batch waits for others
        self._lock = Lock()
        self._unsaved = {}  # run_id -> the latest record of that run not yet committed
        self._started = False
        self._stop_deadline = None
        self._ended = SimpleQueue()
        self.failing = False
        self.last_error = None

    def start(self):
        if not self._started:
            self._started = True
            start_thread(self._run, name="jobs-writer")

    def submit(self, record):
        """Queue ``record`` to be written soon; safe from any thread."""
        if type(record) in (RunStarted, RunFinished):
            with self._lock:
                self._unsaved[record.run_id] = record
        self._queue.put(record)

    def unsaved_runs(self, job):
        """The records of ``job``'s runs submitted but not yet committed."""
        with self._lock:
            return [r for r in self._unsaved.values() if r.job == job]

    def flush(self, timeout=5.0):
        """Wait until everything submitted so far is written; True if it was."""
        done = Lock()
        done.acquire()
        self._queue.put(done)
        self._hurry.put(None)
        return done.acquire(timeout=timeout)

    def stop(self, timeout=5.0):
        """Write what is queued, keep in a file what cannot be written within
        ``timeout`` seconds, and end the thread."""
        if not self._started:
            return
        self._stop_deadline = time.monotonic() + timeout
        self._queue.put(None)
        try:
            self._ended.get(timeout=timeout + 5.0)
        except Empty:
            log.error("The run writer did not stop in time")

    # -- the writer thread ------------------------------------------------------------

    def _run(self):
        try:
            while True:
                batch = self._drain()
                records = [item for item in batch if _is_record(item)]
                ended = any(item is None for item in batch)
                if records and not self._write_until_done(records):
                    rest = [r for r in self._drain_rest() if _is_record(r)]
                    try:
                        self._spool(records + rest)
                    except OSError as exc:
                        log.error("%d job records are lost: %s", len(records) + len(rest), exc)
                    ended = True
                for item in batch:
                    if _is_lock(item):
                        item.release()
                if ended:
                    return
        finally:
            self._ended.put(None)

    def _drain(self):
        batch = [self._queue.get()]
        if _is_record(batch[0]):
            # Let the records of a busy moment gather into one transaction
            # (with 1,000 jobs a second: 50 commits a second, not 3,000), unless
            # somebody waits for them (a control is acknowledged once they are in).
            try:
                self._hurry.get(timeout=self.batch_delay)
            except Empty:
                pass
        try:
            while True:
                self._hurry.get_nowait()  # flushes already served by this batch
        except Empty:
            pass
        try:
            while len(batch) < self.BATCH:
                batch.append(self._queue.get_nowait())
        except Empty:
            pass
        return batch

    def _drain_rest(self):
        rest = []
        try:
            while True:
                item = self._queue.get_nowait()
                if _is_lock(item):
                    item.release()
                else:
                    rest.append(item)
        except Empty:
            return rest

    def _write_until_done(self, records):
        """Write ``records``; False only if stopping and the deadline passed first."""
        attempts = 0
        while True:
            try:
                self._commit(records)
                return True
            except Exception as exc:  # the writer must outlive any fault
                attempts += 1
                self._set_status(True, str(exc))
                log.error("Cannot record job runs (attempt %d): %s", attempts, exc)
                if not _can_clear(exc):
                    self._write_one_by_one(records)
                    return True
            if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
                return False
            sleep(min(self._max_delay, self._retry_delay * attempts))

    def _commit(self, records):
        outcome = self._store.write_records(records, self._owner)
        self._set_status(False, None)
        self._forget(records)
        for job, slot in outcome.duplicates:
            log.warning("A second start of %s for slot %s was refused and not recorded", job, slot)
        if outcome.fenced:
            log.warning(
                "%d records left out: this process no longer holds the scheduler lease",
                outcome.fenced,
            )
            if self._on_fenced is not None:
                self._on_fenced()

    def _write_one_by_one(self, records):
        for record in records:
            try:
                self._commit([record])
            except Exception as exc:
                self._forget([record])
                log.error("Dropped a job record that cannot be written: %s (%r)", exc, record)

    def _forget(self, records):
        with self._lock:
            for record in records:
                run_id = getattr(record, "run_id", None)
                if run_id is not None and self._unsaved.get(run_id) is record:
                    del self._unsaved[run_id]

    def _set_status(self, failing, error):
        changed = failing != self.failing
        self.failing, self.last_error = failing, error
        if changed and self._on_status is not None:
            try:
                self._on_status()
            except Exception:
                log.exception("Reporting the state of the run records failed")

    # -- records kept across a stop -------------------------------------------------------

    def _spool(self, records):
        if self._spool_dir is None:
            log.error("%d job records could not be written and are lost", len(records))
            return
        name = SPOOL_PATTERN.replace("*", f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
        path = os.path.join(self._spool_dir, name)
        with open(path, "w") as handle:
            for record in records:
                data = dataclasses.asdict(record)
                handle.write(json.dumps({"type": type(record).__name__, **data}) + "\n")
        log.error(
            "The database could not be written before the server stopped: %d job records "
            "are kept in %s and will be written at the next start",
            len(records),
            path,
        )

    def replay_spooled(self):
        """Write the records a previous process kept in a file at its stop (its runs
        only: its next slots and live states are out of date by now)."""
        if self._spool_dir is None:
            return 0
        written = 0
        for path in sorted(glob.glob(os.path.join(self._spool_dir, SPOOL_PATTERN))):
            claimed = f"{path}.{os.getpid()}"
            try:
                os.rename(path, claimed)  # another process starting now takes another file
            except OSError:
                continue
            with open(claimed) as handle:
                records = [_record_from_json(line) for line in handle if line.strip()]
            try:
                self._store.write_records(records, self._owner, replaying=True)
            except StoreError as exc:
                os.rename(claimed, path)  # still there for the next start
                log.error("Cannot yet write the job records kept in %s: %s", path, exc)
                continue
            os.unlink(claimed)
            written += len(records)
            log.info("Wrote %d job records kept at the last stop (%s)", len(records), path)
        return written


def _record_from_json(line):
    data = json.loads(line)
    cls = RECORD_TYPES[data.pop("type")]
    if "log" in data:
        data["log"] = tuple(data["log"])
    return cls(**data)


def _can_clear(exc):
    """Whether a failed write may work later: the disk or the lock, not the data."""
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if isinstance(exc, StoreError) and cause is None:
        return True  # the file could not be opened
    return isinstance(cause, sqlite3.OperationalError)


def _is_lock(item):
    return hasattr(item, "acquire") and hasattr(item, "release")


def _is_record(item):
    return item is not None and not _is_lock(item)
