"""When each job runs next, kept in a ``schedule.Scheduler`` that only the loop touches.

``schedule`` gives the timetable: one ``schedule.Job`` per job, tagged with its
name, holding its interval and ``next_run``.  The loop never calls
``run_pending()``, ``Job.run()`` or ``idle_seconds``, because they read the
wall clock themselves, run the body on the calling thread, let a raising job
stay due, and compute the next run from when the body finished (drift).
Instead the loop asks which jobs are due at a time it gives, dispatches them,
and moves each to its next slot: ``slot + k * interval``, the first slot after
now.  Missed slots are skipped, never bunched.

Beside the ``schedule.Scheduler`` a heap of (slot, name) answers "what is due"
and "when is the next one" without a pass over every job: with 1,000 jobs the
loop steps often, and each step must cost little.  Entries left behind by a
job that moved or left are skipped when they reach the top.
"""

import heapq
import math

import schedule

from .clock import to_datetime


class Timetable:
    """The next slot of every scheduled (not paused) job."""

    def __init__(self):
        self._scheduler = schedule.Scheduler()
        self._jobs = {}
        self._heap = []  # (slot, name); stale when the job's slot is no longer that slot
        self._moved = []  # jobs whose schedule.Job.next_run is behind their slot

    def put(self, name, interval, next_run):
        """Schedule ``name`` every ``interval`` seconds with its next slot at ``next_run``."""
        self.remove(name)
        # .do() computes a next_run from the wall clock; it is replaced at once.
        job = self._scheduler.every(interval).seconds.do(_never_called, name).tag(name)
        job.next_run = to_datetime(next_run)
        job.slot = next_run  # exact epoch seconds; datetimes round to microseconds
        self._jobs[name] = job
        heapq.heappush(self._heap, (next_run, name))

    def remove(self, name):
        """Take ``name`` off the timetable (paused, or no longer the leader)."""
        job = self._jobs.pop(name, None)
        if job is not None:
            self._scheduler.cancel_job(job)

    def clear(self):
        self._scheduler.clear()
        self._jobs.clear()
        self._heap.clear()

    def next_run(self, name):
        job = self._jobs.get(name)
        return None if job is None else job.slot

    def take_due(self, now):
        """The jobs whose slot is at or before ``now``, earliest first, as
        (name, slot, next slot): each is moved on to its first slot after ``now``."""
        taken = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            slot, name = heapq.heappop(heap)
            job = self._jobs.get(name)
            if job is None or job.slot != slot:
                continue  # left over from a slot the job has moved on from
            job.slot = next_slot(slot, job.interval, now)
            taken.append((name, slot, job.slot))
        for name, _, later in taken:
            heapq.heappush(heap, (later, name))
            self._moved.append(name)
        return taken

    def refresh(self):
        """Bring each ``schedule.Job.next_run`` up to its slot after ``take_due``
        (left for after the due jobs have started: a datetime per job costs time
        that a burst of 1,000 cannot spare)."""
        moved, self._moved = self._moved, []
        for name in moved:
            job = self._jobs.get(name)
            if job is not None:
                job.next_run = to_datetime(job.slot)

    def next_due(self):
        """The earliest slot of all, or None with nothing scheduled."""
        heap = self._heap
        while heap:
            slot, name = heap[0]
            job = self._jobs.get(name)
            if job is not None and job.slot == slot:
                return slot
            heapq.heappop(heap)  # left over from a slot the job has moved on from
        return None

    def __contains__(self, name):
        return name in self._jobs

    def __len__(self):
        return len(self._jobs)


def next_slot(slot, interval, now):
    """The first time ``slot + k * interval`` (k >= 1) that is after ``now``."""
    if now < slot:
        return slot + interval
    steps = math.floor((now - slot) / interval) + 1
    return slot + steps * interval


def _never_called(name):  # pragma: no cover - the loop never lets schedule run a job
    raise AssertionError(f"schedule tried to run {name} itself")
