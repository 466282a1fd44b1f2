"""The runs of a job as the page and the API show them: as saved, with the records
the run writer has not written yet laid over them, so that a run that ended is never
shown as still running (and the job and its runs agree in every answer).

Called by request threads; reads the writer's unsaved records (a snapshot taken
under its lock) before reading storage, so nothing can slip between the two."""

from . import state as st
from .clock import to_iso
from .storage import RunFinished, RunStarted


def recent_runs(store, writer, job, limit, owner):
    """The job's most recent runs, newest first, as dicts."""
    unsaved = writer.unsaved_runs(job)
    rows = store.runs(job, limit)
    return [_run_row_to_dict(row) for row in _with_unsaved(rows, unsaved, owner)][:limit]


def _with_unsaved(rows, unsaved, owner):
    """``rows`` from storage with the runs' records not yet written laid over them."""
    finishes = {r.run_id: r for r in unsaved if type(r) is RunFinished}
    rows = [dict(row) for row in rows]
    seen = set()
    for row in rows:
        seen.add(row["run_id"])
        finish = finishes.get(row["run_id"])
        if finish is not None:
            row.update(_finish_fields(finish))
    for start in (r for r in unsaved if type(r) is RunStarted and r.run_id not in seen):
        row = {
            "run_id": start.run_id,
            "job": start.job,
            "slot": start.slot,
            "trigger": start.trigger,
            "user": start.user,
            "owner": owner,
            "started_at": start.started_at,
            "finished_at": None,
            "duration": None,
            "outcome": st.IN_PROGRESS,
            "error": None,
            "traceback": None,
            "log": [],
            "result": None,
        }
        finish = finishes.get(start.run_id)
        if finish is not None:
            row.update(_finish_fields(finish))
        rows.append(row)
    rows.sort(key=lambda row: row["started_at"], reverse=True)
    return rows


def _finish_fields(finish):
    return {
        "finished_at": finish.finished_at,
        "duration": finish.duration,
        "outcome": finish.outcome,
        "error": finish.error,
        "traceback": finish.traceback,
        "log": list(finish.log),
        "result": finish.result,
    }


def _run_row_to_dict(row):
    duration = row.get("duration")
    return {
        "id": row["run_id"],
        "started_at": to_iso(row["started_at"]),
        "finished_at": to_iso(row["finished_at"]),
        "duration_ms": None if duration is None else round(duration * 1000, 3),
        "outcome": row["outcome"],
        "trigger": row["trigger"],
        "user": row["user"],
        "error": row["error"],
        "traceback": row["traceback"],
        "log": row["log"],
        "result": row["result"],
        "slot": to_iso(row["slot"]),
    }
