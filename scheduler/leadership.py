"""Leadership: holding the scheduler lease, so that of all the processes sharing the
storage exactly one runs jobs.

Owns (on the keeper's thread) whether this process holds the lease and under
which epoch, and the lease as last seen (``lease``: any thread may read it, it is
replaced whole).  Each round renews a held lease or tries to take a free, expired
or dead holder's one; a takeover gets a new epoch from storage, reads what the
loop needs (``takeover.read``) and only then tells the loop to lead, with the
moment (0.8 of the lease) after which it must start nothing unless renewed.
When the takeover cannot be read the lease is given back at once and tried again
a second later.  Each renewal moves ``tenure``'s end, which the loop reads before
it starts anything (no message: a renewal does not wake it).  ``fenced`` (from the
run writer's thread, when storage refused records of a stale epoch) makes the loop
stop at once and the keeper look again.
"""

import logging
import os
import socket
from dataclasses import replace

from . import takeover
from .errors import StoreError

log = logging.getLogger(__name__)

STOP_AT = 0.8  # of the lease time: the holder starts nothing later than this unless renewed


class Leadership:
    def __init__(self, storage, clock, owner, ttl, *, may_lead, loop, on_status):
        self._storage = storage
        self._clock = clock
        self.owner = owner
        self.ttl = float(ttl)
        self.may_lead = may_lead
        self._loop = loop
        self._on_status = on_status
        self.holding = False
        self.epoch = None
        self.renewed = False  # the latest renewal of a held lease worked
        self.lease = None  # the lease as last seen
        # (epoch, clock.monotonic() after which nothing may start): read by the loop
        # as a snapshot before it starts anything; replaced whole, on this thread only.
        self.tenure = (None, 0.0)
        self._fenced = False  # set from another thread, taken in at the next round
        self.stopping = False
        self.took_over = False  # set at a takeover; the follower then looks at the queue

    def round(self):
        """Renew or try to take the lease once; tell the loop what changed."""
        if self._fenced:
            self._fenced = False
            self._step_down("another process holds the lease now")
        now, mono = self._clock.now(), self._clock.monotonic()
        if self.may_lead and not self.stopping:
            if self.holding:
                self._renew(now, mono)
            else:
                self._acquire(now, mono)
        if not (self.holding and self.renewed):
            try:
                self.lease = self._storage.lease()
            except StoreError:
                pass
        self._on_status()

    def period(self):
        """Seconds until the next round: a holder renews twice per lease time, and a
        second after a renewal that failed; a standby looks every second at most (it
        takes over at once from a holder that died on this machine, after the lease
        time from one it cannot see)."""
        if self.holding and self.renewed:
            return self.ttl / 2
        return min(1.0, self.ttl / 4)

    def fenced(self):
        """Storage refused this process's records: another holds the lease.  Any thread."""
        self._fenced = True
        self._loop.post("follow", self.epoch)  # at once; the keeper's round follows

    def release(self):
        """Give the lease up (at stop, once running jobs finished or were cut off)."""
        self.stopping = True
        if not self.holding:
            return
        self.holding = False
        try:
            self._storage.release_lease(self.owner, self.epoch, self._clock.now())
        except StoreError as exc:
            log.error("Could not release the scheduler lease: %s", exc)

    def _renew(self, now, mono):
        try:
            held = self._storage.renew_lease(self.owner, self.epoch, now, self.ttl)
        except StoreError as exc:
            log.error("Cannot renew the scheduler lease: %s", exc)
            self.renewed = False  # the loop stops starting jobs on its own at STOP_AT
            return
        if held:
            self.renewed = True
            self.lease = replace(self.lease, renewed_at=now, expires_at=now + self.ttl)
            self.tenure = (self.epoch, mono + self.ttl * STOP_AT)
        else:
            self._step_down("another process took the lease")

    def _acquire(self, now, mono):
        try:
            lease = self._storage.acquire_lease(
                self.owner, now, self.ttl, holder_is_gone=holder_is_gone
            )
        except StoreError as exc:
            log.error("Cannot reach the scheduler lease: %s", exc)
            return
        if lease is None:
            return
        try:
            taken = takeover.read(self._storage, now, self.owner)
        except StoreError as exc:
            log.error("Took the scheduler lease but cannot read the jobs' state: %s", exc)
            try:
                self._storage.release_lease(self.owner, lease.epoch, now)
            except StoreError:
                pass
            return
        self.holding, self.renewed, self.epoch, self.lease = True, True, lease.epoch, lease
        self.tenure = (lease.epoch, mono + self.ttl * STOP_AT)
        self.took_over = True
        try:  # waited for: once a round has taken the lease, this process leads
            self._loop.call("lead", lease.epoch, taken, timeout=10.0)
        except TimeoutError:
            log.error("The scheduler loop did not take up the lease in time")

    def _step_down(self, why):
        if self.holding:
            log.warning("Stepping down as the scheduler: %s", why)
        self.holding = self.renewed = False
        self.tenure = (None, 0.0)
        self._loop.post("follow", self.epoch)


def this_process():
    """host:pid-namespace:pid, which tells a process on this machine whether the
    holder of the lease is still alive (see ``holder_is_gone``)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}:{namespace}:{os.getpid()}"


def holder_is_gone(holder):
    """True only if ``holder`` was a process on this machine, in this process
    namespace, that no longer exists.  Anything else (another host, a container,
    a name in another format) is treated as alive: its lease then simply expires."""
    try:
        host, namespace, pid, _ = holder.rsplit(":", 3)
        pid = int(pid)
    except (AttributeError, ValueError):
        return False
    here_host, here_namespace, here_pid = this_process().rsplit(":", 2)
    if host != here_host or namespace != here_namespace or namespace == "0":
        return False
    if pid == int(here_pid) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    try:  # killed but not yet reaped by its parent: gone all the same
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False
