"""Demonstration jobs, registered only when ``JOBS_DEMO`` is on: one quick, one slow that
reports progress, one that always fails, and one that hangs past its timeout, to show
each state on the jobs page."""

import time

STEPS = 50
STEP_SECONDS = 0.1
HANG_LIMIT_SECONDS = 60
WIND_DOWN_STEPS = 15  # 1.5 s


def register(registry):
    """Add the demo jobs to ``registry``."""
    registry.add(demo_tick, name="demo_tick", category="demo", interval="5s")
    registry.add(demo_slow, name="demo_slow", category="demo", interval="1h", timeout="1m")
    registry.add(demo_fail, name="demo_fail", category="demo", interval="1h")
    registry.add(demo_hang, name="demo_hang", category="demo", interval="1h", timeout="2s")


def demo_tick(ctx):
    """Return at once: a job that is always idle and ok."""
    ctx.log.info("tick (%s)", ctx.trigger)
    return "tick"


def demo_slow(ctx):
    """Take about five seconds, reporting progress, to show a running job."""
    for step in range(STEPS):
        if ctx.cancelled:
            ctx.log.warning("cancelled after %d of %d steps", step, STEPS)
            return f"cancelled after {step} of {STEPS} steps"
        # Waiting is this job's whole purpose; short steps keep it quick to cancel.
        time.sleep(STEP_SECONDS)
        ctx.progress((step + 1) / STEPS, f"step {step + 1} of {STEPS}")
    return f"finished {STEPS} steps"


def demo_fail(ctx):
    """Always fail, to show how an error is reported."""
    ctx.log.info("about to fail on purpose")
    raise RuntimeError("demo failure")


def demo_hang(ctx):
    """Run until asked to stop (at most a minute), to show a run past its timeout."""
    started = time.monotonic()
    while not ctx.cancelled and (waited := time.monotonic() - started) < HANG_LIMIT_SECONDS:
        ctx.progress(waited / HANG_LIMIT_SECONDS, f"waiting to be asked to stop ({waited:.0f} s)")
        time.sleep(STEP_SECONDS)
    if ctx.cancelled:
        ctx.log.warning("asked to stop; winding down")
        # A real job cleans up before it returns: the card shows it stuck meanwhile.
        for step in range(WIND_DOWN_STEPS):
            ctx.progress(1.0, f"winding down ({step + 1} of {WIND_DOWN_STEPS})")
            time.sleep(STEP_SECONDS)
        return "stopped when asked"
    return f"gave up after {HANG_LIMIT_SECONDS} s"
