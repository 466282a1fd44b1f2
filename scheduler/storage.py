"""The seam between the engine and where it keeps things.

The loop, the runs, the leadership and the follower reach storage only through the
methods of ``Storage`` and ``ChangeFeed`` below, with the typed records of this
module.  No closure over a connection crosses the seam, so a second backend
(PostgreSQL: a lease timed by the database's clock, ``LISTEN``/``NOTIFY`` as the
feed) needs no change to the engine.  The SQLite ``Store`` and its file-watching
feed are the first implementation.

Fencing: every record that only the scheduler may make (a run start, a job's next
slot, its live state for the other processes) carries the lease epoch it was made
under.  ``write_records`` writes it only if that epoch is still the current lease's
and held by the writer's owner, checked in the same transaction; anything else is
counted in ``WriteOutcome.fenced`` and left out, while the rest of the batch is
written.  A second start of one (job, slot) is refused by a unique constraint and
reported in ``WriteOutcome.duplicates``; it never costs another record its place.

Records are made by one thread and read by others, and never changed once made.
(The run records are plain slotted dataclasses rather than frozen ones: a burst of
1,000 due jobs makes three thousand of them, and a frozen one takes five times as
long to make.)
"""

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class RunStarted:
    """A run began; ``next_run`` is the job's next slot once it started."""

    run_id: str
    job: str
    trigger: str
    started_at: float
    slot: float | None
    user: str | None
    next_run: float | None
    epoch: int
    fenced = True


@dataclass(slots=True)
class RunFinished:
    """A run ended with ``outcome``.  Not fenced: it describes a run already in the
    history (a process that lost the lease only updates that run's own row)."""

    run_id: str
    job: str
    finished_at: float
    duration: float
    outcome: str
    error: str | None
    traceback: str | None
    log: tuple
    result: str | None
    epoch: int  # the job's own state is updated only under a current epoch
    fenced = False


@dataclass(slots=True)
class RunLogKept:
    """Lines a run logged after it was recorded as timed out or interrupted."""

    run_id: str
    job: str
    log: tuple
    fenced = False


@dataclass(slots=True)
class NextRun:
    """A job's next slot (None: not scheduled)."""

    job: str
    next_run: float | None
    epoch: int
    fenced = True


@dataclass(slots=True)
class LiveState:
    """A job's state as the scheduler shows it, for the other processes."""

    job: str
    data: dict
    epoch: int
    fenced = True


RECORD_TYPES = {
    cls.__name__: cls for cls in (RunStarted, RunFinished, RunLogKept, NextRun, LiveState)
}


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What ``write_records`` left out: records of a stale epoch, and (job, slot)
    pairs already started."""

    fenced: int = 0
    duplicates: tuple = ()


@dataclass(frozen=True, slots=True)
class Lease:
    holder: str
    epoch: int
    acquired_at: float
    renewed_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Setting:
    """A job's saved overrides: ``interval_seconds`` None means its default.
    ``seq`` orders every saved change: a higher one is newer."""

    job: str
    paused: bool
    interval_seconds: int | None
    seq: int
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class LiveChange:
    job: str
    data: dict
    seq: int
    origin: str


@dataclass(frozen=True, slots=True)
class Command:
    """A Run Now queued for whichever process runs the scheduler."""

    id: int
    job: str
    action: str
    user: str | None
    at: float
    origin: str | None


@dataclass(frozen=True, slots=True)
class Changes:
    """What other processes saved after a cursor, in the order they saved it."""

    cursor: int
    settings: tuple  # Setting
    live: tuple  # LiveChange
    commands: bool  # a command was queued or claimed


class Storage(Protocol):
    """What the engine needs from storage.  Every method may raise ``StoreError``
    (with words an operator can act on) and then has changed nothing."""

    # -- loading --
    def load_settings(self) -> dict: ...  # {job: Setting}
    def load_job_states(self) -> dict: ...  # {job: {last_*, next_run, ...}}
    def recent_runs(self, jobs, limit) -> dict: ...
    def mark_interrupted_runs(self, at, except_owner=None) -> list: ...

    # -- controls (synchronous: acknowledged means saved) --
    def save_control(self, job, *, at, user, action, origin, describe, **changes) -> Setting: ...
    def record_manual_run(self, start: RunStarted, *, owner, command_id=None) -> None: ...
    def add_command(self, job, action, *, user, at, origin) -> None: ...
    def pending_commands(self) -> list: ...  # [Command]
    def refuse_command(self, command_id, *, at, reason) -> bool: ...

    # -- records (from the run writer, in batches) --
    def write_records(self, records, owner) -> WriteOutcome: ...

    # -- the lease --
    def acquire_lease(self, holder, now, ttl, holder_is_gone=None) -> Lease | None: ...
    def renew_lease(self, holder, epoch, now, ttl) -> bool: ...
    def release_lease(self, holder, epoch, now) -> None: ...
    def lease(self) -> Lease | None: ...

    # -- reads for the page --
    def runs(self, job, limit=20) -> list: ...

    def change_feed(self) -> "ChangeFeed": ...


class ChangeFeed(Protocol):
    """Wakes the follower when another process saved something, and says what."""

    def wait(self, timeout) -> bool: ...  # True if something may have changed
    def wake(self) -> None: ...  # end a wait now, from any thread
    def changes_since(self, cursor) -> Changes | None: ...  # None: nothing new
    def close(self) -> None: ...
