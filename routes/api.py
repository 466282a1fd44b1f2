"""The jobs API: JSON for scripts and the page's fetch calls, and the target of the
page's plain form posts (which get a 303 back to the page with a message)."""

import logging

from flask import Blueprint, current_app, flash, jsonify, redirect, request
from flask_login import current_user

from routes.access import admin_api
from routes.errors import RETRY_AFTER_SECONDS, api_error, store_failure_message
from scheduler import (
    IntervalError,
    JobBusyError,
    NotLeaderError,
    ShuttingDownError,
    StoreError,
    UnknownJobError,
)
from scheduler.native import call_off_hub

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api/jobs")

RUNS_SHOWN = 25
PAGE = "/admin/jobs"


def engine():
    return current_app.extensions["jobs"]


def wants_json():
    """JSON unless the client is a browser form asking for HTML first."""
    if request.is_json:
        return True
    accept = request.accept_mimetypes
    listed = {value for value, _ in accept}
    if "text/html" not in listed:
        return True
    return accept["application/json"] > accept["text/html"]


@bp.get("")
@admin_api
def list_jobs():
    """The scheduler's state, the version it was taken at, and every job."""
    return jsonify(engine().snapshot())


@bp.get("/<name>")
@admin_api
def show_job(name):
    """One job with its most recent runs, newest first."""
    try:
        job = engine().job(name)
        job["runs"] = call_off_hub(engine().runs, name, RUNS_SHOWN)
    except UnknownJobError as exc:
        return api_error(str(exc), 404)
    return jsonify(job)


@bp.post("/<name>/run")
@admin_api
def run_now(name):
    """Start a run now: 202 with the job, 409 while it is already running."""
    return _control(name, engine().run_now, 202, "started")


@bp.post("/<name>/pause")
@admin_api
def pause(name):
    """Stop scheduled runs of the job."""
    return _control(name, engine().pause, 200, "paused")


@bp.post("/<name>/resume")
@admin_api
def resume(name):
    """Schedule the job again."""
    return _control(name, engine().resume, 200, "resumed")


@bp.post("/<name>/interval")
@admin_api
def set_interval(name):
    """Run the job every ``interval`` (30s, 5m, 1h, 1d, 1h30m)."""
    try:
        engine().job(name)  # an unknown job is 404 whatever the body says
    except UnknownJobError as exc:
        return _failure(name, str(exc), 404)
    if request.is_json:
        body = request.get_json(silent=True)
        value = body.get("interval") if isinstance(body, dict) else None
    else:
        value = request.form.get("interval")
    if value is None:
        return _failure(name, "Send an interval such as 30s, 5m, 1h, 1d or 1h30m.", 400)
    return _control(name, engine().set_interval, 200, "now runs every {interval}", value)


@bp.post("/<name>/reset")
@admin_api
def reset_interval(name):
    """Put the job back on its default interval."""
    done = "back to its default interval of {interval}"
    return _control(name, engine().reset_interval, 200, done)


def _control(name, control, status, done, *args):
    """Call ``control(name, *args, user=...)``, an engine method, off the gevent hub
    (its database write may wait on a lock; it needs no app context there), and
    answer as the client asked: JSON, or a redirect with a message."""
    try:
        job = call_off_hub(control, name, *args, user=current_user.username)
    except UnknownJobError as exc:
        return _failure(name, str(exc), 404)
    except IntervalError as exc:
        return _failure(name, str(exc), 400)
    except JobBusyError as exc:
        return _failure(name, str(exc), 409)
    except (NotLeaderError, ShuttingDownError) as exc:
        return _failure(name, str(exc), 503, retry_after=True)
    except StoreError as exc:
        # Here, not in the app's handler: a plain form post gets the page back with
        # the message, as for every other refusal, rather than a JSON body.
        log.error("Database error: %s", exc)
        return _failure(name, store_failure_message(exc), 503, retry_after=True)
    if wants_json():
        return jsonify(job), status
    flash(f"{name}: {done.format(**job)}.", "success")
    return redirect(PAGE, 303)


def _failure(name, message, status, retry_after=False):
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if retry_after else {}
    if wants_json():
        return api_error(message, status, **headers)
    flash(f"{name}: {message}", "error")
    return redirect(PAGE, 303)
