"""Job definitions and the registry that collects them.

    jobs = JobRegistry()

    @jobs.job(category="dns", interval="5m", timeout="1m")
    def check_zones(ctx):
        "Check that every zone file parses."
        ...

A registry is an ordinary object: an app builds its own, so nothing global has
to be cleared between tests.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import IntervalError, JobDefinitionError
from .intervals import format_interval, parse_interval

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_CATEGORY = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MAX_DESCRIPTION = 200


@dataclass(frozen=True)
class JobDefinition:
    """What a job is: its identity, its default schedule and the function it runs."""

    name: str
    category: str
    description: str
    interval: int
    func: Callable
    timeout: float | None = None

    @property
    def interval_text(self):
        return format_interval(self.interval)


class JobRegistry:
    """An ordered collection of job definitions with unique names."""

    def __init__(self):
        self._jobs = {}

    def job(self, name=None, *, category, interval, description=None, timeout=None):
        """Decorator: register the function as a job (name and description default
        to the function's name and the first line of its docstring)."""

        def register(func):
            self.add(
                func,
                name=name or func.__name__,
                category=category,
                interval=interval,
                description=description,
                timeout=timeout,
            )
            return func

        return register

    def add(self, func, *, name, category, interval, description=None, timeout=None):
        """Register ``func`` as a job and return its JobDefinition."""
        if not callable(func):
            raise JobDefinitionError(f"Job {name!r} needs a function to run; got {func!r}.")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise JobDefinitionError(
                f"Job name {name!r} must be 1-64 characters of a-z, 0-9, '_', '.' or '-', "
                "starting with a letter or digit, e.g. 'check_zones'."
            )
        if name in self._jobs:
            raise JobDefinitionError(f"A job named {name!r} is already registered.")
        if not isinstance(category, str) or not _CATEGORY.fullmatch(category):
            raise JobDefinitionError(
                f"Category {category!r} of job {name!r} must be a lowercase word such as "
                "'dns', 'dhcp' or 'system'."
            )
        if description is None:
            description = (func.__doc__ or "").strip().splitlines()[0:1]
            description = description[0].strip() if description else ""
        if not isinstance(description, str) or not description.strip():
            raise JobDefinitionError(f"Job {name!r} needs a one-line description (or a docstring).")
        description = description.strip()
        if "\n" in description or len(description) > MAX_DESCRIPTION:
            raise JobDefinitionError(
                f"The description of job {name!r} must be one line of at most "
                f"{MAX_DESCRIPTION} characters."
            )
        definition = JobDefinition(
            name=name,
            category=category,
            description=description,
            interval=_seconds(interval, f"interval of job {name!r}"),
            func=func,
            timeout=None if timeout is None else _seconds(timeout, f"timeout of job {name!r}"),
        )
        self._jobs[name] = definition
        return definition

    def __getitem__(self, name):
        return self._jobs[name]

    def __contains__(self, name):
        return name in self._jobs

    def __iter__(self):
        return iter(self._jobs.values())

    def __len__(self):
        return len(self._jobs)

    def names(self):
        """Job names in registration order."""
        return list(self._jobs)


def _seconds(value, what):
    """Interval text ('5m') or a whole number of seconds, checked; else JobDefinitionError."""
    try:
        if isinstance(value, str):
            return parse_interval(value)
        return parse_interval(format_interval(value))
    except IntervalError as exc:
        raise JobDefinitionError(f"Bad {what}: {exc}") from None
