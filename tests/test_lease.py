"""One scheduler among many processes, decided by a lease in the database (in-process
engines with a manual clock; tests/test_lease_processes.py uses real processes)."""

import threading

import pytest
from helpers import settle

from scheduler import Engine, NotLeaderError


def engine_on(store, clock, registry, owner, **options):
    engine = Engine(registry, store, clock=clock, lease_ttl=5.0, owner=owner, **options)
    engine.start()
    return engine


def hang_keeper(engine):
    """Make ``engine``'s keeper thread hang (as a process stuck on its disk would):
    it renews nothing until the returned event is set."""
    release, entered = threading.Event(), threading.Event()

    def hang():
        entered.set()
        release.wait(30)

    threading.Thread(target=engine.keeper.call, args=(hang, 60), daemon=True).start()
    assert entered.wait(5)
    return release


def round_of(*engines):
    for engine in engines:
        engine.keep_lease()
        engine.step()


@pytest.fixture
def ticks(registry):
    seen = []
    registry.add(
        lambda ctx: seen.append(ctx.slot),
        name="tick",
        category="test",
        interval="1s",
        description="Tick.",
    )
    return seen


def test_only_one_of_several_engines_runs_jobs(store, clock, registry, ticks):
    engines = [engine_on(store, clock, registry, f"p{i}") for i in range(3)]
    round_of(*engines)
    assert sum(e.leader for e in engines) == 1
    leader = next(e for e in engines if e.leader)
    for _ in range(5):
        clock.advance(1)
        round_of(*engines)
        settle(leader)
    assert len(ticks) == len(set(ticks)) == 5
    assert all(e.scheduler_info()["running"] for e in engines)
    for e in engines:
        e.stop(grace=1)


def test_a_standby_takes_over_when_the_holder_stops_renewing(store, clock, registry, ticks):
    first = engine_on(store, clock, registry, "first")
    first.keep_lease()  # the holder, before the standby starts
    second = engine_on(store, clock, registry, "second")
    round_of(first, second)
    assert first.leader and not second.leader
    clock.advance(1)
    round_of(first, second)
    settle(first)
    assert len(ticks) == 1

    # ``first``'s keeper hangs: it renews nothing.  At 0.8 of the lease its loop
    # stops starting jobs by itself; ``second`` may take over only after the full lease.
    release = hang_keeper(first)
    for _ in range(4):
        clock.advance(1)
        second.keep_lease()
        second.step()
    assert not second.leader
    clock.advance(1.5)
    second.keep_lease()
    second.step()
    assert second.leader

    first.step()  # its loop woke at the lease's end and started nothing since
    assert not first.leader
    assert first.scheduler_info()["here"] is False
    clock.advance(1)
    round_of(second)
    settle(second)
    settle(first)
    assert len(ticks) == len(set(ticks))
    release.set()
    first.keep_lease()  # back: it finds another holder and stays a follower
    first.step()
    assert not first.leader
    for e in (first, second):
        e.stop(grace=1)


def test_a_stopped_holder_hands_over_at_once(store, clock, registry, ticks):
    first = engine_on(store, clock, registry, "first")
    first.keep_lease()  # the holder, before the standby starts
    second = engine_on(store, clock, registry, "second")
    round_of(first, second)
    first.stop(grace=1)
    second.keep_lease()
    second.step()
    assert second.leader
    second.stop(grace=1)


def test_a_web_only_engine_reports_whether_any_scheduler_is_alive(store, clock, registry, ticks):
    web = engine_on(store, clock, registry, "web", run_jobs=False)
    web.keep_lease()
    assert web.scheduler_info()["running"] is False
    with pytest.raises(NotLeaderError, match="No scheduler is running"):
        web.run_now("tick")

    worker = engine_on(store, clock, registry, "worker")
    worker.keep_lease()
    web.keep_lease()
    info = web.scheduler_info()
    assert (info["running"], info["here"], info["holder"]) == (True, False, "worker")

    clock.advance(6)  # the worker died: its heartbeat goes stale
    with web.subscribe() as subscription:
        web.keep_lease()
        assert web.scheduler_info()["running"] is False
        events = subscription.get(timeout=1)
    assert [(e.kind, e.data["running"]) for e in events] == [("scheduler", False)]
    web.stop(grace=0)
    worker.stop(grace=0)
