"""Exactly one scheduler across real processes: the lease moves to a standby when
the holder is killed or stops, and no (job, slot) ever runs twice.

Each worker is ``procs/lease_worker.py``: an engine on the shared database whose
1 s job appends ``"<slot> <pid>"`` to a shared file as it starts.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scheduler import Store

pytestmark = pytest.mark.slow

WORKER = Path(__file__).parent / "procs" / "lease_worker.py"


class Cluster:
    """Worker processes on one database; every one is killed in ``close()``."""

    def __init__(self, tmp_path, *, lease_ttl, hold=0.0):
        self.tmp_path = tmp_path
        self.db_path = tmp_path / "jobs.db"
        self.out_path = tmp_path / "beats.txt"
        self.lease_ttl = lease_ttl
        self.hold = hold
        self.procs = {}

    def start(self, count):
        # The schema is made first: processes that open a fresh file at the same moment
        # can fail on "PRAGMA journal_mode = WAL" ("database is locked"), which is not
        # what these tests are about.
        store = Store(self.db_path)
        store.migrate()
        store.close()
        for index in range(count):
            with (
                open(self.tmp_path / f"worker{index}.out", "wb") as out,
                open(self.tmp_path / f"worker{index}.err", "wb") as err,
            ):
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        str(WORKER),
                        str(self.db_path),
                        str(self.out_path),
                        str(self.lease_ttl),
                        str(self.hold),
                    ],
                    stdout=out,
                    stderr=err,
                )
            self.procs[proc.pid] = proc

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait(timeout=10)

    def terminate(self, pid, timeout=10):
        """SIGTERM one worker and wait for it to exit; return its exit code."""
        proc = self.procs[pid]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def wait_for(self, predicate, timeout, what):
        """``wait_for``, and on a timeout every live worker's stacks and the lease."""
        try:
            return wait_for(predicate, timeout, what)
        except AssertionError as exc:
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGUSR1)  # lease_worker dumps its threads
            time.sleep(0.5)
            lease = self.query("SELECT * FROM lease")
            raise AssertionError(
                f"{exc}; now {time.time():.3f}, lease {lease}\n{self.stderr()[-8000:]}"
            ) from None

    def stderr(self):
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.tmp_path.glob("worker*.err"))
        )

    def beats(self):
        """[(slot, pid)] in the order they were written."""
        if not self.out_path.exists():
            return []
        lines = self.out_path.read_text().splitlines()
        return [(float(slot), int(pid)) for slot, pid in (line.split() for line in lines)]

    def query(self, sql, params=()):
        conn = sqlite3.connect(self.db_path, timeout=5)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def holder_pid(self):
        """The pid of the process holding an unexpired lease, or None."""
        if not self.db_path.exists():
            return None
        try:
            rows = self.query("SELECT holder, expires_at FROM lease")
        except sqlite3.OperationalError:  # no schema yet
            return None
        if not rows or rows[0][1] <= time.time():
            return None
        # The engine names its holder "<host>:<pid>:<random>".
        return int(rows[0][0].rsplit(":", 2)[1])


def wait_for(predicate, timeout, what):
    """Poll ``predicate`` every 20 ms until it returns a true value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def assert_no_slot_ran_twice(cluster):
    slots = [slot for slot, _ in cluster.beats()]
    assert len(slots) == len(set(slots)), f"a slot ran twice: {sorted(slots)}"
    duplicates = cluster.query(
        "SELECT job, slot, count(*) FROM runs WHERE slot IS NOT NULL"
        " GROUP BY job, slot HAVING count(*) > 1"
    )
    assert duplicates == []


@pytest.fixture
def cluster_factory(tmp_path):
    clusters = []

    def make(**options):
        cluster = Cluster(tmp_path, **options)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()


@pytest.mark.parametrize(
    "lease_ttl",
    [
        1.0,
        # Far longer than the test: the standby sees that the holder's process is
        # gone (same machine) instead of waiting for the lease to run out.
        60.0,
    ],
)
def test_a_standby_takes_over_within_the_ttl_when_the_leader_is_killed(cluster_factory, lease_ttl):
    # Each run takes 0.5 s, so the leader can be killed with a run in flight.
    cluster = cluster_factory(lease_ttl=lease_ttl, hold=0.5)
    cluster.start(3)

    cluster.wait_for(lambda: len(cluster.beats()) >= 2, 10, "the first runs")
    leader = cluster.holder_pid()
    assert leader in cluster.procs
    assert {pid for _, pid in cluster.beats()} == {leader}, "a standby ran the job"

    # Kill the leader while a run is recorded as started and still going.
    def run_in_flight():
        rows = cluster.query("SELECT run_id, slot FROM runs WHERE outcome = 'running'")
        started = {slot for slot, _ in cluster.beats()}
        return [row for row in rows if row[1] in started]

    ((run_id, killed_slot),) = cluster.wait_for(run_in_flight, 5, "a run in flight")
    os.kill(leader, signal.SIGKILL)
    killed_at = time.monotonic()
    cluster.procs[leader].wait(timeout=5)
    beats_before = len(cluster.beats())

    successor = cluster.wait_for(
        lambda: (pid := cluster.holder_pid()) not in (None, leader) and pid, 10, "a new holder"
    )
    handover = time.monotonic() - killed_at
    cluster.wait_for(
        lambda: any(pid != leader for _, pid in cluster.beats()), 10, "a run elsewhere"
    )
    takeover = time.monotonic() - killed_at
    print(f"kill -9: lease taken after {handover:.3f} s, first run after {takeover:.3f} s")
    assert takeover < min(lease_ttl, 1.0) + 2.0, (
        f"the first run after kill -9 came {takeover:.2f} s later "
        f"(lease taken after {handover:.2f} s; ttl {lease_ttl} s)"
    )

    cluster.wait_for(
        lambda: len(cluster.beats()) >= beats_before + 3, 10, "three runs by the successor"
    )
    survivors = [pid for pid in cluster.procs if pid != leader]
    for pid in survivors:
        assert cluster.terminate(pid) == 0, cluster.stderr()

    beats = cluster.beats()
    before, after = beats[:beats_before], beats[beats_before:]
    assert {pid for _, pid in before} == {leader}
    assert {pid for _, pid in after} == {successor}, f"more than one successor ran: {after}"
    assert (killed_slot, leader) in before
    assert min(slot for slot, _ in after) > killed_slot
    assert_no_slot_ran_twice(cluster)

    # The successor recorded the dead leader's open run as interrupted; nothing is left
    # marked running after the graceful stops.
    ((outcome,),) = cluster.query("SELECT outcome FROM runs WHERE run_id = ?", (run_id,))
    assert outcome == "interrupted"
    assert cluster.query("SELECT run_id FROM runs WHERE outcome = 'running'") == []
    owners = cluster.query("SELECT DISTINCT owner FROM runs WHERE slot > ?", (killed_slot,))
    assert [int(owner.rsplit(":", 2)[1]) for (owner,) in owners] == [successor]
    assert "Traceback" not in cluster.stderr(), cluster.stderr()


def test_a_leader_that_stops_hands_the_lease_over_at_once(cluster_factory):
    # A long ttl, so a hand-over through expiry (at least ttl - ttl/5 = 2.4 s after the
    # stop) cannot pass for the release.
    lease_ttl = 3.0
    cluster = cluster_factory(lease_ttl=lease_ttl)
    cluster.start(2)

    cluster.wait_for(lambda: len(cluster.beats()) >= 2, 10, "the first runs")
    leader = cluster.holder_pid()
    assert {pid for _, pid in cluster.beats()} == {leader}

    stopped_at = time.monotonic()
    assert cluster.terminate(leader) == 0, cluster.stderr()
    exited = time.monotonic() - stopped_at
    beats_before = len(cluster.beats())
    successor = cluster.wait_for(
        lambda: (pid := cluster.holder_pid()) not in (None, leader) and pid, 10, "a new holder"
    )
    handover = time.monotonic() - stopped_at
    cluster.wait_for(lambda: len(cluster.beats()) > beats_before, 10, "a run by the successor")
    takeover = time.monotonic() - stopped_at
    print(
        f"SIGTERM: exited after {exited:.3f} s, lease taken after {handover:.3f} s, "
        f"first run after {takeover:.3f} s"
    )
    # The standby retries every ttl/5 = 0.6 s, so it sees the released lease within that.
    assert handover < lease_ttl / 2, (
        f"the lease moved {handover:.2f} s after SIGTERM (leader exited after {exited:.2f} s, "
        f"first run elsewhere after {takeover:.2f} s; ttl {lease_ttl} s)"
    )
    assert takeover < lease_ttl, f"the first run elsewhere came {takeover:.2f} s after SIGTERM"

    (other,) = [pid for pid in cluster.procs if pid != leader]
    assert successor == other
    assert cluster.terminate(other) == 0, cluster.stderr()

    beats = cluster.beats()
    assert {pid for _, pid in beats[:beats_before]} == {leader}
    assert {pid for _, pid in beats[beats_before:]} == {successor}
    assert_no_slot_ran_twice(cluster)
    # A graceful stop finishes its runs: none is interrupted or left running.
    outcomes = {outcome for (outcome,) in cluster.query("SELECT outcome FROM runs")}
    assert outcomes == {"ok"}
    assert "Traceback" not in cluster.stderr(), cluster.stderr()
