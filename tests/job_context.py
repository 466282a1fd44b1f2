"""A real RunContext for job tests, with the progress reports kept in a list."""

from dataclasses import dataclass, field

from scheduler.clock import ManualClock
from scheduler.context import RunContext
from scheduler.state import Run


@dataclass
class JobRun:
    """One run of a job under test: its context, its Run and what it reported."""

    ctx: RunContext
    run: Run
    progress: list = field(default_factory=list)

    def lines(self):
        """The run's kept log lines, oldest first."""
        return self.run.log.lines()


def job_run(job="test_job", *, settings=None, store=None, cancel_after=None):
    """A JobRun for ``job``; with ``cancel_after=n`` the run is cancelled at its n-th
    progress report, as the engine would on a timeout."""
    clock = ManualClock()
    run = Run(job=job, trigger="manual", started_at=clock.now(), user="ann")
    reports = []

    def on_progress(run, fraction, message):
        reports.append((fraction, message))
        run.progress = (fraction, message)
        if cancel_after is not None and len(reports) >= cancel_after:
            run.cancelled = True

    ctx = RunContext(run, settings=settings or {}, store=store, on_progress=on_progress)
    return JobRun(ctx=ctx, run=run, progress=reports)
