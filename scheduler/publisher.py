"""The publisher: job changes to the event bus (and, from the scheduler, to the
other processes), and the scheduler's status whenever it changes.

Job changes come from the loop's thread only, so they reach the bus in the order
the loop made them.  The scheduler's status is published by any thread (the
loop, the keeper, the run writer): it is worked out and published under one
lock, so the last status published is always the newest.
"""

from . import state as st
from .native import Lock
from .storage import LiveState


class Publisher:
    def __init__(self, bus, writer, status):
        self.bus = bus
        self._writer = writer
        self._status = status  # () -> the scheduler's status as the page shows it
        self._lock = Lock()
        self._published = None

    def job_changed(self, state, epoch=None):
        """Publish ``state``'s view; with an ``epoch`` (this process leads) also save
        it for the other processes.  Returns the view.  Loop thread only."""
        data = state.to_dict()
        self.bus.publish("job", state.name, data)
        if epoch is not None:
            self._writer.submit(LiveState(state.name, st.state_to_raw(state), epoch))
        return data

    def scheduler_changed(self, force=False):
        """Tell the streams when a scheduler starts or stops anywhere, or saving starts
        or stops failing.  Any thread."""
        with self._lock:
            info = self._status()
            # A renewal alone (a new heartbeat) is no news: streams send heartbeats.
            status = {key: value for key, value in info.items() if key != "heartbeat_at"}
            if force or status != self._published:
                self._published = status
                self.bus.publish("scheduler", "scheduler", info)
