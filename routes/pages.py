"""The Jobs page, a job's history page, and the site's icon."""

from flask import Blueprint, abort, current_app, redirect, render_template, url_for

from routes.access import admin_page
from scheduler import UnknownJobError
from scheduler.native import call_off_hub

RUNS_SHOWN = 25

bp = Blueprint("pages", __name__)


@bp.get("/admin/jobs")
@admin_page
def jobs():
    """Every job as a live card, rendered on the server so the page works without JS."""
    snapshot = current_app.extensions["jobs"].snapshot()
    categories = sorted({job["category"] for job in snapshot["jobs"]})
    return render_template("jobs.html", snapshot=snapshot, categories=categories)


@bp.get("/admin/jobs/<name>/history")
@admin_page
def history(name):
    """A job's recent runs as a page of its own (the script shows them in a dialog)."""
    engine = current_app.extensions["jobs"]
    try:
        job = engine.job(name)
    except UnknownJobError:
        abort(404)
    runs = call_off_hub(engine.runs, name, RUNS_SHOWN)
    return render_template("history.html", job=job, runs=runs)


@bp.get("/favicon.ico")
def favicon():
    """The icon, for browsers that ask for it here instead of following the pages' link
    (and for anything that is not a page, such as the API's JSON)."""
    return redirect(url_for("static", filename="favicon.svg"))


@bp.app_template_global()
def persistence_text(error):
    """The status bar's words while saving to the database fails (static/jobs.js
    writes the same)."""
    return (
        f"Saving to the database is failing. {error or ''} Jobs keep running, but their "
        "latest runs may be missing from the history; pause, resume and interval changes "
        "are refused until this is fixed."
    )


@bp.app_template_filter("relative")
def relative(iso_time, now=None):
    """'12 s ago' or 'in 4 min' for an ISO time, as the page's script also writes it."""
    import time
    from datetime import datetime

    if not iso_time:
        return ""
    moment = datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()
    return relative_text(moment - (time.time() if now is None else now))


def relative_text(delta):
    """Words for a time ``delta`` seconds from now (negative: in the past)."""
    seconds = abs(delta)
    if seconds < 1:
        return "now"
    size, unit = next(
        u for u in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")) if seconds >= u[0]
    )
    amount = int(seconds // size)
    return f"{amount} {unit} ago" if delta < 0 else f"in {amount} {unit}"
