"""The state of each job and of each run, and the one rule that gives a job's status."""

import functools
import itertools
import os
import uuid
from dataclasses import dataclass, field

from .clock import to_iso
from .context import RunLog
from .intervals import format_interval
from .registry import JobDefinition

IDLE, RUNNING, PAUSED, ERROR = "idle", "running", "paused", "error"
OK, FAILED, TIMED_OUT, INTERRUPTED, IN_PROGRESS = (
    "ok",
    "error",
    "timed out",
    "interrupted",
    "running",
)
SCHEDULED, MANUAL = "scheduled", "manual"
FAILURE_OUTCOMES = frozenset({FAILED, TIMED_OUT, INTERRUPTED})
MAX_RESULT_LENGTH = 500
RECENT_RUNS = 20


_RUN_ID_PREFIX = uuid.uuid4().hex[:12]
_run_numbers = itertools.count(1)


def new_run_id():
    """An id unique across processes and restarts, without a system call per run."""
    return f"{_RUN_ID_PREFIX}{next(_run_numbers):08x}"


def _new_run_id_prefix():
    """A forked process (a gunicorn worker) draws its own prefix, or every worker
    of one master would number its runs alike."""
    global _RUN_ID_PREFIX, _run_numbers
    _RUN_ID_PREFIX = uuid.uuid4().hex[:12]
    _run_numbers = itertools.count(1)


os.register_at_fork(after_in_child=_new_run_id_prefix)


@dataclass(slots=True)
class Run:
    """One execution of a job, from start to outcome.

    Cheap to create (slots, the log made on first use): the loop creates one per
    due job between the job's slot and its start."""

    job: str
    trigger: str
    started_at: float
    user: str | None = None
    slot: float | None = None
    deadline: float | None = None  # monotonic time after which the run is stuck
    id: str = field(default_factory=new_run_id)
    finished_at: float | None = None
    outcome: str = IN_PROGRESS
    error: str | None = None
    traceback: str | None = None
    result: str | None = None
    progress: tuple | None = None  # (fraction, message)
    cancelled: bool = False
    superseded: bool = False  # recorded as timed out or interrupted; its body may go on
    mirrored: bool = False  # a run executing in another process, seen through the database
    _log: RunLog | None = field(default=None, init=False, repr=False)

    @property
    def log(self):
        """The run's ``RunLog``: the lines it logged, kept with the run."""
        if self._log is None:
            self._log = RunLog(self.job)
        return self._log

    @property
    def duration(self):
        if self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.started_at)

    def to_dict(self):
        duration = self.duration
        return {
            "id": self.id,
            "started_at": to_iso(self.started_at),
            "finished_at": to_iso(self.finished_at),
            "duration_ms": None if duration is None else round(duration * 1000, 3),
            "outcome": self.outcome,
            "trigger": self.trigger,
            "user": self.user,
            "error": self.error,
            "traceback": self.traceback,
            "log": self.log.lines(),
            "result": self.result,
        }


@dataclass
class JobState:
    """Everything the page shows about one job, kept by the engine."""

    definition: JobDefinition
    interval: int
    paused: bool = False
    run_count: int = 0
    last_started_at: float | None = None
    last_finished_at: float | None = None
    last_duration: float | None = None
    last_outcome: str | None = None
    last_error: str | None = None
    last_traceback: str | None = None
    last_slot: float | None = None
    next_run: float | None = None
    current: Run | None = None
    stuck: bool = False
    recent: list = field(default_factory=list)  # recent_run() dicts, oldest first
    settings_seq: int = -1  # the saved change its pause and interval come from

    @property
    def name(self):
        return self.definition.name

    @property
    def status(self):
        """running if a run is executing; else paused if paused; else error if the
        most recent run failed; else idle."""
        if self.current is not None:
            return RUNNING
        if self.paused:
            return PAUSED
        if self.last_outcome in FAILURE_OUTCOMES:
            return ERROR
        return IDLE

    @property
    def interval_overridden(self):
        return self.interval != self.definition.interval

    def to_dict(self):
        """The job as the API and the event stream show it."""
        progress = None
        if self.current is not None and self.current.progress is not None:
            fraction, message = self.current.progress
            progress = {"fraction": fraction, "message": message}
        return {
            "name": self.name,
            "category": self.definition.category,
            "description": self.definition.description,
            "status": self.status,
            "interval": _interval_text(self.interval),
            "interval_seconds": self.interval,
            "default_interval": _interval_text(self.definition.interval),
            "interval_overridden": self.interval_overridden,
            "paused": self.paused,
            "run_count": self.run_count,
            "last_run": to_iso(self.last_started_at),
            "last_finished": to_iso(self.last_finished_at),
            "next_run": None if self.paused else to_iso(self.next_run),
            "last_outcome": self.last_outcome,
            "last_error": self.last_error,
            "last_duration_ms": (
                None if self.last_duration is None else round(self.last_duration * 1000, 3)
            ),
            "progress": progress,
            "stuck": self.stuck,
            "timeout_seconds": self.definition.timeout,
            "recent_runs": list(self.recent),
        }

    def remember(self, run):
        """Keep a finished run's duration and outcome for the card's chart."""
        self.recent.append(recent_run(run.started_at, run.duration, run.outcome))
        del self.recent[:-RECENT_RUNS]


@functools.lru_cache(maxsize=4096)
def _interval_text(seconds):
    return format_interval(seconds)


def recent_run(started_at, duration, outcome):
    """One bar of a card's chart, formatted once (it is sent with every change)."""
    return {
        "started_at": to_iso(started_at),
        "duration_ms": None if duration is None else round(duration * 1000, 3),
        "outcome": outcome,
    }


RAW_FIELDS = (
    "interval",
    "paused",
    "run_count",
    "last_started_at",
    "last_finished_at",
    "last_duration",
    "last_outcome",
    "last_error",
    "last_slot",
    "next_run",
    "stuck",
    "recent",
)


def state_to_raw(state):
    """The fields another process needs to show ``state`` exactly as this one does."""
    raw = {name: getattr(state, name) for name in RAW_FIELDS}
    run = state.current
    raw["current"] = (
        None
        if run is None
        else {
            "id": run.id,
            "trigger": run.trigger,
            "user": run.user,
            "started_at": run.started_at,
            "slot": run.slot,
            "progress": run.progress,
        }
    )
    return raw


# Every process takes pause and interval from the saved controls, in the order they
# were saved; a live state written before a control must not undo it.
CONTROLLED_FIELDS = frozenset({"interval", "paused"})


def apply_raw(state, raw):
    """Make ``state`` show what ``state_to_raw`` captured in another process (all
    but its pause and interval, which come from the saved controls)."""
    for name in RAW_FIELDS:
        if name not in CONTROLLED_FIELDS:
            setattr(state, name, raw[name])
    if state.paused:
        state.next_run = None
    current = raw["current"]
    if current is None:
        state.current = None
    else:
        state.current = Run(
            job=state.name,
            trigger=current["trigger"],
            started_at=current["started_at"],
            user=current["user"],
            slot=current["slot"],
            id=current["id"],
            progress=tuple(current["progress"]) if current["progress"] else None,
            mirrored=True,
        )


def describe_result(value):
    """A short, truthful text for whatever a job function returned (None gives None)."""
    if value is None:
        return None
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception as exc:  # a __repr__ that raises is still recorded
        text = f"<unprintable {type(value).__name__}: {exc}>"
    if len(text) > MAX_RESULT_LENGTH:
        text = text[:MAX_RESULT_LENGTH] + " …[truncated]"
    return text
