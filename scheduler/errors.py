"""Exceptions raised by the scheduler; each message says what to do instead."""


class SchedulerError(Exception):
    """Base class for every error the scheduler raises on bad input or state."""


class IntervalError(SchedulerError, ValueError):
    """An interval text or number that the scheduler does not accept."""


class JobDefinitionError(SchedulerError, ValueError):
    """A job defined with a bad name, category, description, interval or timeout."""


class UnknownJobError(SchedulerError, KeyError):
    """A control named a job that does not exist."""

    def __init__(self, name):
        super().__init__(name)
        self.name = name

    def __str__(self):
        return f"No job named {self.name!r}."


class JobBusyError(SchedulerError):
    """Run now was asked while the job's run is still executing within its timeout."""


class NotLeaderError(SchedulerError):
    """A control that needs the running scheduler was sent to a process that is not it."""


class StoreError(SchedulerError):
    """The database could not be read or written; the message names the file."""


class LeaseLostError(NotLeaderError):
    """This process's lease epoch is no longer the current one: it must not start runs."""


class ShuttingDownError(SchedulerError):
    """A control arrived after the server began to stop."""

    def __init__(self, message=None):
        super().__init__(
            message or "The server is stopping, so nothing was changed; try again once it is back."
        )


class CommandClaimedError(SchedulerError):
    """A queued command was already carried out (or dropped) by another process."""
