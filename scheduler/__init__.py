"""The CodexDNS job scheduler: recurring jobs, run on time, controlled from the page."""

from .clock import ManualClock, SystemClock
from .context import RunContext
from .engine import Engine
from .errors import (
    IntervalError,
    JobBusyError,
    JobDefinitionError,
    NotLeaderError,
    SchedulerError,
    ShuttingDownError,
    StoreError,
    UnknownJobError,
)
from .events import RESYNC, EventBus
from .intervals import format_interval, parse_interval
from .registry import JobDefinition, JobRegistry
from .store import Store

__all__ = [
    "RESYNC",
    "Engine",
    "EventBus",
    "IntervalError",
    "JobBusyError",
    "JobDefinition",
    "JobDefinitionError",
    "JobRegistry",
    "ManualClock",
    "NotLeaderError",
    "RunContext",
    "SchedulerError",
    "ShuttingDownError",
    "Store",
    "StoreError",
    "SystemClock",
    "UnknownJobError",
    "format_interval",
    "parse_interval",
]
