"""The storage seam as the SQLite store implements it: lease epochs, fenced records,
a slot started twice, and queued commands claimed once."""

import pytest
from helpers import LONG_LEASE

from scheduler import Engine
from scheduler.errors import CommandClaimedError, LeaseLostError
from scheduler.storage import LiveState, NextRun, RunFinished, RunStarted


def start(run_id, job, slot, epoch, started_at=100.0):
    return RunStarted(run_id, job, "scheduled", started_at, slot, None, slot + 60, epoch)


def test_every_takeover_counts_up_the_epoch_and_a_holder_keeps_its_own(store):
    first = store.acquire_lease("a", 0.0, 10.0)
    assert (first.holder, first.epoch) == ("a", 1)
    assert store.acquire_lease("b", 5.0, 10.0) is None  # held by a, not expired
    assert store.acquire_lease("a", 5.0, 10.0).epoch == 1  # still a's: the same epoch
    second = store.acquire_lease("b", 20.0, 10.0)  # a's lease ran out
    assert (second.holder, second.epoch) == ("b", 2)
    assert store.acquire_lease("a", 40.0, 10.0).epoch == 3


def test_a_holder_renews_only_its_own_holding(store):
    store.acquire_lease("a", 0.0, 10.0)
    assert store.renew_lease("a", 1, 5.0, 10.0) is True
    assert store.renew_lease("a", 2, 5.0, 10.0) is False  # another epoch
    assert store.renew_lease("b", 1, 5.0, 10.0) is False  # another holder
    assert store.lease().expires_at == 15.0


def test_records_of_a_stale_epoch_are_left_out_and_the_rest_written(store):
    store.acquire_lease("a", 0.0, 10.0)
    store.acquire_lease("b", 20.0, 10.0)  # b took over: epoch 2
    outcome = store.write_records(
        [
            start("r1", "zones", 60.0, epoch=1),
            NextRun("zones", 120.0, epoch=1),
            LiveState("zones", {"status": "running"}, epoch=1),
            start("r2", "zones", 120.0, epoch=2),
        ],
        "b",
    )
    assert outcome.fenced == 3
    assert [r["run_id"] for r in store.runs("zones")] == ["r2"]
    assert store.load_job_states()["zones"]["next_run"] == 180.0
    # Under the stale epoch a process that lost the lease records nothing.
    outcome = store.write_records([start("r3", "dhcp", 60.0, epoch=2)], "a")
    assert outcome.fenced == 1 and store.runs("dhcp") == []


def test_a_slot_started_twice_is_refused_without_dropping_the_others(store):
    store.acquire_lease("a", 0.0, 10.0)
    store.write_records([start("r1", "zones", 60.0, epoch=1)], "a")
    outcome = store.write_records(
        [start("r2", "zones", 60.0, epoch=1), start("r3", "dhcp", 60.0, epoch=1)], "a"
    )
    assert outcome.duplicates == (("zones", 60.0),)
    assert [r["run_id"] for r in store.runs("zones")] == ["r1"]
    assert [r["run_id"] for r in store.runs("dhcp")] == ["r3"]


def test_a_run_ends_in_the_history_even_once_its_lease_is_lost(store):
    """A stale process's finish updates its own run's row, never the job's state."""
    store.acquire_lease("a", 0.0, 10.0)
    store.write_records([start("r1", "zones", 60.0, epoch=1)], "a")
    store.acquire_lease("b", 20.0, 10.0)
    finish = RunFinished("r1", "zones", 70.0, 10.0, "ok", None, None, (), None, epoch=1)
    store.write_records([finish], "a")
    assert store.runs("zones")[0]["outcome"] == "ok"
    assert store.load_job_states()["zones"]["last_outcome"] is None


def test_a_manual_run_is_recorded_only_under_the_current_epoch(store):
    store.acquire_lease("a", 0.0, 10.0)
    store.acquire_lease("b", 20.0, 10.0)
    run = RunStarted("m1", "zones", "manual", 25.0, None, "ann", None, epoch=1)
    with pytest.raises(LeaseLostError):
        store.record_manual_run(run, owner="a")
    assert store.runs("zones") == [] and store.audit_trail() == []


def test_a_queued_command_is_claimed_exactly_once(store):
    store.acquire_lease("a", 0.0, 10.0)
    store.add_command("zones", "run", user="ann", at=1.0, origin="web")
    command = store.pending_commands()[0]
    first = RunStarted("m1", "zones", "manual", 2.0, None, "ann", None, epoch=1)
    store.record_manual_run(first, owner="a", command_id=command.id)
    second = RunStarted("m2", "zones", "manual", 3.0, None, "ann", None, epoch=1)
    with pytest.raises(CommandClaimedError):
        store.record_manual_run(second, owner="a", command_id=command.id)
    assert [r["run_id"] for r in store.runs("zones")] == ["m1"]
    assert store.refuse_command(command.id, at=4.0, reason="gone") is False


def test_a_scheduler_whose_records_are_fenced_off_steps_down_at_once(
    registry, store, clock, db_path
):
    from test_engine_races import wait_for

    from scheduler import Store

    registry.add(lambda ctx: None, name="zones", category="t", interval="1m", description="Z.")
    engine = Engine(registry, store, clock=clock, lease_ttl=LONG_LEASE, owner="a")
    engine.start()
    assert engine.leader
    other = Store(db_path)
    other._write(lambda conn: conn.execute("UPDATE lease SET holder = 'b', epoch = epoch + 1"))
    other.close()
    engine.pause("zones")  # its next slot, a fenced record, is refused
    wait_for(lambda: not engine.leader, what="the fenced scheduler to step down")
    engine.stop(grace=0)
