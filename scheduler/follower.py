"""The follower: takes in what the other processes saved, and in the scheduler
carries out the Run Now requests they queued.

Owns (on the keeper's thread) the cursor of the change feed it has read up to, and
whether the queue must be looked at again soon.  What it reads goes to the loop
as messages: a saved setting (applied only if newer than the job's), a live state
from the scheduler (shown as it is, in a process that does not lead).  A queued
Run Now that cannot be recorded now (the database fails, the lease changes hands)
stays queued and is tried again within a second; one that cannot be carried out
at all (the job is running, or gone) leaves the queue with an audit line saying why.
"""

import logging

from .errors import (
    CommandClaimedError,
    JobBusyError,
    NotLeaderError,
    ShuttingDownError,
    StoreError,
    UnknownJobError,
)

log = logging.getLogger(__name__)


class Follower:
    def __init__(self, storage, loop, clock, owner, run_queued):
        self._storage = storage
        self._loop = loop
        self._clock = clock
        self.owner = owner
        self._run_queued = run_queued  # run_queued(command): the controls' Run Now
        self.feed = None  # set once the engine starts
        self.cursor = None
        self.retry_soon = False

    def round(self):
        """Take in what was saved since the last round."""
        changes = self.feed.changes_since(self.cursor, live=not self._loop.leading)
        if changes is not None:
            self.cursor = changes.cursor
            for setting in changes.settings:
                if setting.origin != self.owner:
                    self._loop.post("setting", setting)
            for live in changes.live:
                if live.origin != self.owner:
                    self._loop.post("live", live)
        if self._loop.leading and (self.retry_soon or (changes is not None and changes.commands)):
            self.carry_out_queue()

    def carry_out_queue(self):
        self.retry_soon = False
        try:
            commands = self._storage.pending_commands()
        except StoreError as exc:
            log.error("Cannot read the queued runs: %s", exc)
            self.retry_soon = True
            return
        for command in commands:
            try:
                self._run_queued(command)
            except CommandClaimedError:
                continue
            except (JobBusyError, UnknownJobError) as exc:
                log.warning("Queued run of %s not started: %s", command.job, exc)
                try:
                    self._storage.refuse_command(command.id, at=self._clock.now(), reason=str(exc))
                except StoreError:
                    self.retry_soon = True
            except (NotLeaderError, ShuttingDownError, StoreError, TimeoutError) as exc:
                log.warning("Queued run of %s not started yet: %s", command.job, exc)
                self.retry_soon = True
                return
