"""The system jobs: history retention and database maintenance."""

import pytest

from jobs import build_registry
from jobs.system import history_days
from tests.job_context import job_run

DAY = 86400


class FakeStore:
    """Stands in for scheduler.store.Store: records the calls and answers like it."""

    def __init__(self, deleted=0, checkpoint=None):
        self.calls = []
        self.deleted = deleted
        self.checkpoint_info = checkpoint or {
            "busy": False,
            "log_pages": 12,
            "checkpointed_pages": 12,
        }

    def prune_history(self, older_than_seconds):
        self.calls.append(("prune_history", older_than_seconds))
        return self.deleted

    def checkpoint(self):
        self.calls.append(("checkpoint",))
        return self.checkpoint_info

    def optimize(self):
        self.calls.append(("optimize",))


def run(name, settings=None, store=None):
    job = job_run(name, settings=settings, store=store)
    return build_registry({})[name].func(job.ctx), job


def test_system_jobs_are_registered_with_their_schedules():
    registry = build_registry({})
    retention, maintenance = registry["history_retention"], registry["db_maintenance"]
    assert (retention.category, retention.interval_text, retention.timeout) == ("system", "1d", 600)
    assert (maintenance.category, maintenance.interval_text) == ("system", "1h")


def test_history_retention_keeps_30_days_by_default():
    store = FakeStore(deleted=7)

    result, job = run("history_retention", store=store)

    assert store.calls == [("prune_history", 30 * DAY)]
    assert result == "deleted 7 runs older than 30 days"
    assert job.lines() == ["INFO deleted 7 runs older than 30 days"]


@pytest.mark.parametrize(
    ("value", "seconds"), [(7, 7 * DAY), ("14", 14 * DAY), (0.5, DAY / 2), ("", 30 * DAY)]
)
def test_history_retention_reads_the_days_from_the_setting(value, seconds):
    store = FakeStore()

    run("history_retention", settings={"JOBS_HISTORY_DAYS": value}, store=store)

    assert store.calls == [("prune_history", seconds)]


@pytest.mark.parametrize("value", ["thirty", 0, "0", -1, "nan", "inf", True, [30]])
def test_history_days_rejects_values_that_are_not_a_positive_number(value):
    with pytest.raises(ValueError, match=r"Unexpected value JOBS_HISTORY_DAYS=.*positive number"):
        history_days({"JOBS_HISTORY_DAYS": value})


def test_db_maintenance_checkpoints_then_optimizes():
    store = FakeStore()

    result, job = run("db_maintenance", store=store)

    assert store.calls == [("checkpoint",), ("optimize",)]
    assert result == "checkpointed 12 pages; statistics refreshed"
    assert job.lines() == [
        "INFO checkpoint: 12 of 12 WAL pages moved to the database",
        "INFO query planner statistics refreshed",
    ]


def test_db_maintenance_warns_when_the_checkpoint_was_blocked():
    store = FakeStore(checkpoint={"busy": True, "log_pages": 40, "checkpointed_pages": 10})

    result, job = run("db_maintenance", store=store)

    assert result == "checkpointed 10 pages, database busy; statistics refreshed"
    assert "WARNING checkpoint could not complete because the database was busy" in job.lines()
    assert store.calls == [("checkpoint",), ("optimize",)]
