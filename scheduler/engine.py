"""The engine: the small facade that wires the scheduler's roles together.

Roles, each with one owner (see each module's docstring):

- ``loop.Loop`` (thread ``jobs-loop``, in every process): every job's state, the
  timetable, leading or not under which epoch, deadlines, the runs' bookkeeping.
- ``keeper.Keeper`` (thread ``jobs-keeper``): ``leadership.Leadership`` (the lease)
  and ``follower.Follower`` (what other processes saved, the queued Run Nows).
- ``writer.RunWriter`` (thread ``jobs-writer``): the records, in batches.
- ``executor.NativeExecutor`` (threads ``jobs-worker``): job bodies (``runs.execute``).
- ``controls.Controls``: entered by request threads; saves, then messages the loop.
- ``publisher.Publisher``: the event bus, which keeps each job's latest view, so
  the views below read what the loop published and never touch a job's state.

Storage is reached through the seam in ``storage``; ``store.Store`` (SQLite) is the
first implementation.
"""

import logging
import os
import time
import uuid

from . import history, runs, takeover
from . import state as st
from .clock import SystemClock, to_iso
from .controls import Controls
from .errors import UnknownJobError
from .events import EventBus
from .executor import NativeExecutor
from .follower import Follower
from .keeper import Keeper
from .leadership import Leadership, this_process
from .loop import Loop
from .native import Empty, SimpleQueue, start_thread
from .native import sleep as native_sleep
from .publisher import Publisher
from .writer import RunWriter

log = logging.getLogger(__name__)

DEFAULT_LEASE_TTL = 30.0
DEFAULT_STAGGER = 0.25


class Engine:
    """Runs the jobs of a registry on schedule and answers the page's controls."""

    def __init__(
        self,
        registry,
        store,
        *,
        clock=None,
        settings=None,
        run_jobs=True,
        owner=None,
        lease_ttl=DEFAULT_LEASE_TTL,
        max_workers=32,
        stagger=DEFAULT_STAGGER,
        bus=None,
    ):
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be a positive number of seconds.")
        self.registry = registry
        self.store = store
        self.clock = clock or SystemClock()
        self.settings = dict(settings or {})
        self.run_jobs = run_jobs
        self.owner = owner or f"{this_process()}:{uuid.uuid4().hex[:8]}"
        self.lease_ttl = float(lease_ttl)
        self.started_at = None
        self.stopping = False
        self._stopped = False
        self.states = {d.name: st.JobState(d, interval=d.interval) for d in registry}
        # A burst of every job starting and finishing must not force a resync.
        self.bus = bus or EventBus(max_pending=max(1000, 4 * len(registry)))
        path = getattr(store, "path", None)
        self.writer = RunWriter(
            store,
            self.owner,
            spool_dir=os.path.dirname(os.path.abspath(path)) if path else None,
            on_status=lambda: self.publisher.scheduler_changed(),
            on_fenced=self._fenced,
        )
        self.executor = NativeExecutor(
            max_workers=max_workers, on_drained=lambda: self.loop.executor_drained()
        )
        self.publisher = Publisher(self.bus, self.writer, lambda: self.scheduler_info())
        self.loop = Loop(
            self.states,
            clock=self.clock,
            writer=self.writer,
            publisher=self.publisher,
            executor=self.executor,
            execute=self.execute,
            stagger=stagger,
            started_at=None,
        )
        self.leadership = Leadership(
            store,
            self.clock,
            self.owner,
            lease_ttl,
            may_lead=run_jobs,
            loop=self.loop,
            on_status=self.publisher.scheduler_changed,
        )
        self.loop.tenure = lambda: self.leadership.tenure
        self.controls = Controls(self)
        self.follower = Follower(store, self.loop, self.clock, self.owner, self._run_queued)
        self.keeper = Keeper(self.leadership, self.follower)
        self._exited = SimpleQueue()
        self._threads = 0

    # -- lifecycle ---------------------------------------------------------------

    def start(self):
        """Load the saved state and start the threads: the loop, the writer, the keeper."""
        if self.started_at is not None:
            return
        self.started_at = self.loop.started_at = self.clock.now()
        self.writer.replay_spooled()
        takeover.load(self.states, self.store, st.RECENT_RUNS)
        for state in self.states.values():  # before the loop owns them
            self.bus.set_initial("job", state.name, state.to_dict())
        self.writer.start()
        self.follower.feed = self.keeper.feed = self.store.change_feed()
        self._spawn(self.loop.run, "jobs-loop")
        self._spawn(self.keeper.run, "jobs-keeper")
        try:  # started: the scheduler's status is known, the lease tried once
            self.keep_lease()
        except TimeoutError:
            log.warning("The first round of the scheduler lease is slow; it goes on by itself")

    def stop(self, grace=10.0):
        """Refuse controls from now on, stop scheduling, give running jobs ``grace``
        seconds, record the rest as interrupted, write every record (or keep it for
        the next start), then give up the lease and end every event stream."""
        if self._stopped:
            return
        self._stopped = self.stopping = True
        self.bus.close_all()  # live streams end now, so browsers reconnect elsewhere
        if self.started_at is None:
            return
        self.loop.call("stop")
        if not self.wait_idle(grace):
            self.loop.call("interrupt")
        self.loop.call("end")
        self.writer.stop()  # every record on disk before the lease goes
        self.keeper.stop()  # gives up the lease as its last act
        self.executor.shutdown()
        self._join_threads(timeout=5.0)
        self.keeper.feed.close()

    def wait_idle(self, timeout=5.0):
        """Wait (on the real clock) until no job runs here and the loop has recorded
        and published every run that ended; True if so."""
        deadline = time.monotonic() + timeout
        while self.loop.busy:
            if time.monotonic() >= deadline:
                return False
            native_sleep(0.005)
        if not self.loop.ended:
            self.step()
        return not self.loop.running

    def _spawn(self, target, name):
        def run():
            try:
                target()
            finally:
                self._exited.put(name)

        self._threads += 1
        start_thread(run, name=name)

    def _join_threads(self, timeout):
        deadline = time.monotonic() + timeout
        while self._threads:
            try:
                self._exited.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                log.warning("%d scheduler threads did not end in time", self._threads)
                return
            self._threads -= 1

    # -- wiring ------------------------------------------------------------------

    def execute(self, run):
        """A run's body, on a worker thread."""
        runs.execute(
            run,
            self.states[run.job].definition,
            clock=self.clock,
            settings=self.settings,
            store=self.store,
            post=self.loop.post,
        )

    def _run_queued(self, command):
        self.controls.run_now(command.job, user=command.user, command_id=command.id)

    def _fenced(self):
        self.leadership.fenced()
        self.keeper.feed.wake()

    # -- controls (any thread; off the gevent hub) ---------------------------------

    def run_now(self, name, user=None, *, command_id=None):
        """Start a run at once (allowed while paused); JobBusyError while one runs.
        The run and its audit line are on disk before it starts and before this
        returns; elsewhere than in the scheduler the request is queued for it."""
        return self.controls.run_now(name, user, command_id=command_id)

    def pause(self, name, user=None):
        """Stop scheduled runs of ``name`` (a run in progress finishes)."""
        return self.controls.pause(name, user)

    def resume(self, name, user=None):
        """Schedule ``name`` again: one interval after its last run, or at once if
        that moment has passed."""
        return self.controls.resume(name, user)

    def set_interval(self, name, interval, user=None):
        """Run ``name`` every ``interval`` (text such as '5m'); takes effect at once."""
        return self.controls.set_interval(name, interval, user)

    def reset_interval(self, name, user=None):
        """Put ``name`` back on its default interval."""
        return self.controls.reset_interval(name, user)

    # -- views (any thread: they read what the loop published) ----------------------

    @property
    def leader(self):
        """Whether this process runs the jobs now."""
        return self.loop.leading and not self.loop.lapsed

    def job(self, name):
        """The job's state as the API shows it."""
        self._known(name)
        return dict(self.bus.latest("job", name))

    def _known(self, name):
        if not isinstance(name, str) or name not in self.states:
            raise UnknownJobError(name)

    def jobs(self):
        return self.bus.snapshot("job", lambda version, jobs: [dict(j) for j in jobs])

    def snapshot(self):
        """{"scheduler", "version", "jobs"}: everything the page shows, at one version."""
        return self.bus.snapshot("job", self._snapshot)

    def subscribe(self):
        """A subscription whose ``snapshot`` is the state at its starting version."""
        return self.bus.subscribe(self._snapshot)

    def _snapshot(self, version, jobs):
        return {"scheduler": self.scheduler_info(), "version": version, "jobs": jobs}

    def runs(self, name, limit=20):
        """The job's most recent runs, newest first (the running one included), as
        saved or about to be: a run that ended is never shown as still running."""
        self._known(name)
        return history.recent_runs(self.store, self.writer, name, limit, self.owner)

    def scheduler_info(self):
        """Whether a scheduler is alive anywhere (a fresh lease), and which one."""
        lease = self.leadership.lease
        here = self.leader
        alive = lease is not None and lease.expires_at > self.clock.now()
        elsewhere = alive and lease.holder != self.owner  # ours counts only while leading
        return {
            "running": bool(here or elsewhere),
            "here": here,
            "holder": lease.holder if lease else None,
            "heartbeat_at": to_iso(lease.renewed_at) if lease else None,
            "persistence_ok": not self.writer.failing and self.store.write_failure is None,
            "persistence_error": self.writer.last_error or self.store.write_failure,
        }

    # -- for tests: one round of a thread's work, done by that thread ----------------

    def step(self):
        """Wake the loop and wait until it has done one round (dispatch, bookkeeping)."""
        self.loop.call("step")

    def keep_lease(self):
        """Have the keeper do one round of the lease now, and the loop take it in."""
        self.keeper.call(self.keeper.keep_lease)
        self.step()

    def sync(self):
        """Have the keeper take in what other processes saved now, and the loop too."""
        self.keeper.call(self.follower.round)
        self.step()
