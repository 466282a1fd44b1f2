"""System jobs: keep the scheduler's own database small and healthy."""

import math

HISTORY_DAYS = "JOBS_HISTORY_DAYS"
DEFAULT_HISTORY_DAYS = 30
DAY = 86400


def register(registry):
    """Add the system jobs to ``registry``."""
    registry.add(
        history_retention,
        name="history_retention",
        category="system",
        interval="1d",
        timeout="10m",
    )
    registry.add(
        db_maintenance, name="db_maintenance", category="system", interval="1h", timeout="10m"
    )


def history_retention(ctx):
    """Delete run history and audit lines older than the retention period."""
    days = history_days(ctx.settings)
    deleted = ctx.store.prune_history(days * DAY)
    ctx.log.info("deleted %d runs older than %g days", deleted, days)
    return f"deleted {deleted} runs older than {days:g} days"


def db_maintenance(ctx):
    """Checkpoint the database's write-ahead log and refresh the query planner's statistics."""
    info = ctx.store.checkpoint()
    ctx.log.info(
        "checkpoint: %s of %s WAL pages moved to the database",
        info["checkpointed_pages"],
        info["log_pages"],
    )
    if info["busy"]:
        # Readers or writers held the log; the next run finishes the job, so only warn.
        ctx.log.warning("checkpoint could not complete because the database was busy")
    ctx.store.optimize()
    ctx.log.info("query planner statistics refreshed")
    busy = ", database busy" if info["busy"] else ""
    return f"checkpointed {info['checkpointed_pages']} pages{busy}; statistics refreshed"


def history_days(settings):
    """The retention in days, from the setting; a positive number, 30 when unset."""
    value = settings.get(HISTORY_DAYS)
    # Checked against None rather than with `or`, so that 0 is rejected, not read as 30.
    if value is None or value == "":
        return DEFAULT_HISTORY_DAYS
    try:
        days = float(value)
    except (TypeError, ValueError):
        days = math.nan
    if isinstance(value, bool) or not 0 < days < math.inf:
        raise ValueError(
            f"Unexpected value {HISTORY_DAYS}={value!r}; use a positive number of days, e.g. 30."
        )
    return int(days) if days.is_integer() else days
