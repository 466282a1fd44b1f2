"""The registry of built-in jobs, and the demo jobs it holds only with JOBS_DEMO."""

import time
from types import SimpleNamespace

import pytest

from jobs import build_registry, demo
from tests.job_context import job_run


def categories(registry):
    return {job.name: job.category for job in registry}


def test_the_registry_holds_the_dns_dhcp_and_system_jobs_without_demo_jobs():
    registry = build_registry({})

    assert categories(registry) == {
        "dns_zone_check": "dns",
        "dns_resolver_probe": "dns",
        "dhcp_lease_prune": "dhcp",
        "dhcp_active_leases": "dhcp",
        "history_retention": "system",
        "db_maintenance": "system",
    }


def test_demo_jobs_stay_out_when_the_setting_is_false():
    assert "demo" not in categories(build_registry({"JOBS_DEMO": False})).values()


def test_demo_jobs_are_added_with_their_intervals_when_the_setting_is_on():
    registry = build_registry({"JOBS_DEMO": True})

    demo_jobs = {j.name: (j.category, j.interval_text) for j in registry if j.category == "demo"}
    assert demo_jobs == {
        "demo_tick": ("demo", "5s"),
        "demo_slow": ("demo", "1h"),
        "demo_fail": ("demo", "1h"),
        "demo_hang": ("demo", "1h"),
    }
    assert registry["demo_hang"].timeout == 2
    assert len(registry) == 10


def test_each_call_builds_a_new_registry():
    assert build_registry({}) is not build_registry({})


def test_every_job_has_a_one_line_description():
    for job in build_registry({"JOBS_DEMO": True}):
        assert job.description and "\n" not in job.description


def run(name, job):
    return build_registry({"JOBS_DEMO": True})[name].func(job.ctx)


def test_demo_tick_returns_at_once():
    job = job_run("demo_tick")

    assert run("demo_tick", job) == "tick"
    assert job.lines() == ["INFO tick (manual)"]


def test_demo_fail_always_raises():
    with pytest.raises(RuntimeError, match="^demo failure$"):
        run("demo_fail", job_run("demo_fail"))


def test_demo_slow_reports_progress_for_each_step(monkeypatch):
    waits = []
    monkeypatch.setattr(demo, "time", SimpleNamespace(sleep=waits.append))
    job = job_run("demo_slow")

    assert run("demo_slow", job) == "finished 50 steps"
    assert waits == [0.1] * 50
    assert job.progress[0] == (0.02, "step 1 of 50")
    assert job.progress[-1] == (1.0, "step 50 of 50")
    assert len(job.progress) == 50


def test_demo_slow_stops_soon_after_it_is_cancelled():
    job = job_run("demo_slow", cancel_after=2)

    assert run("demo_slow", job) == "cancelled after 2 of 50 steps"
    assert job.progress == [(0.02, "step 1 of 50"), (0.04, "step 2 of 50")]
    assert "WARNING cancelled after 2 of 50 steps" in job.lines()


class QuickTime:
    """Stands in for ``time`` in the demo module: each sleep is a millisecond."""

    def __init__(self):
        self.slept = 0.0

    def sleep(self, seconds):
        self.slept += seconds
        time.sleep(0.001)

    def monotonic(self):
        return self.slept


def test_demo_hang_runs_until_it_is_asked_to_stop(monkeypatch):
    monkeypatch.setattr(demo, "time", QuickTime())
    job = job_run("demo_hang", cancel_after=3)

    assert run("demo_hang", job) == "stopped when asked"
    assert "WARNING asked to stop; winding down" in job.lines()


def test_a_run_now_of_demo_hang_is_flagged_stuck_asked_to_stop_and_timed_out(make_engine, clock):
    from helpers import settle

    engine = make_engine(build_registry({"JOBS_DEMO": True}))
    engine.run_now("demo_hang")
    clock.advance(1.9)
    engine.step()
    assert engine.job("demo_hang")["stuck"] is False
    clock.advance(0.1)  # its timeout of 2 s
    settle(engine)  # flagged stuck, asked to stop: the body stops within a step
    job = engine.job("demo_hang")
    assert (job["status"], job["last_outcome"]) == ("error", "timed out")
    run = engine.runs("demo_hang")[0]
    assert run["outcome"] == "timed out"
    assert run["result"] == "stopped when asked"
    assert any("asked to stop" in line for line in run["log"])


def test_demo_hang_gives_up_after_a_minute(monkeypatch):
    monkeypatch.setattr(demo, "time", QuickTime())

    assert run("demo_hang", job_run("demo_hang")) == "gave up after 60 s"
