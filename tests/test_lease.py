"""One scheduler among many processes, decided by a lease in the database (in-process
engines with a manual clock; tests/test_lease_processes.py uses real processes)."""

import pytest
from helpers import settle

from scheduler import Engine, NotLeaderError


def engine_on(store, clock, registry, owner, **options):
    engine = Engine(registry, store, clock=clock, lease_ttl=5.0, owner=owner, **options)
    engine.start(threads=False)
    return engine


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
    assert [e.leader for e in engines] == [True, False, False]
    for _ in range(5):
        clock.advance(1)
        round_of(*engines)
        settle(engines[0])
    assert len(ticks) == len(set(ticks)) == 5
    assert all(e.scheduler_info()["running"] for e in engines)
    for e in engines:
        e.stop(grace=1)


def test_a_standby_takes_over_when_the_holder_stops_renewing(store, clock, registry, ticks):
    first, second = (
        engine_on(store, clock, registry, "first"),
        engine_on(store, clock, registry, "second"),
    )
    round_of(first, second)
    clock.advance(1)
    round_of(first, second)
    settle(first)
    assert len(ticks) == 1

    # ``first`` hangs: it neither renews nor steps.  Within 0.8 of the lease it
    # would stop by itself; ``second`` may take over only after the full lease.
    for _ in range(4):
        clock.advance(1)
        second.keep_lease()
        second.step()
    assert not second.leader
    clock.advance(1.5)
    second.keep_lease()
    second.step()
    assert second.leader

    first.step()  # waking up late, the old holder must not start anything
    assert not first.leader
    clock.advance(1)
    round_of(second)
    settle(second)
    settle(first)
    assert len(ticks) == len(set(ticks))
    for e in (first, second):
        e.stop(grace=1)


def test_a_stopped_holder_hands_over_at_once(store, clock, registry, ticks):
    first, second = (
        engine_on(store, clock, registry, "first"),
        engine_on(store, clock, registry, "second"),
    )
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
