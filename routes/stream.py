"""``GET /api/jobs/sse``: the page's live updates as Server-Sent Events.

The stream opens with ``retry:`` and a ``snapshot`` event, then sends ``job`` and
``scheduler`` events as they happen, each with ``id:`` = its version.  A comment
goes out when a heartbeat interval passes in silence, which is also when the
stream notices a client that left (WSGI only learns it when a write fails); once
every heartbeat interval, busy or not, it checks that the session is still
signed in and whether saving to the database started or stopped failing (a
``scheduler`` event without ``id:`` says so).  Streams end after a while so the
browser reconnects with a fresh snapshot, and at once when the server stops.
The generator holds no request context, session or database connection while it
waits.
"""

import json
import random
import socket
import time

from flask import Blueprint, Response, current_app, request
from flask_login import current_user

from routes.access import admin_api
from scheduler import RESYNC

bp = Blueprint("stream", __name__)

RETRY_MS = 3000
SEND_BUFFER_BYTES = 64 * 1024  # what one client that stopped reading can hold


def frame(data=None, *, event=None, id=None, retry=None):
    """One SSE message in wire format, ending with the blank line."""
    lines = []
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    if data is not None:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        lines.extend(f"data: {line}" for line in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def event_frame(change):
    """``change`` in wire format, encoded once for every stream that sends it."""
    encoded = change.encoded
    if encoded is None:
        encoded = change.encoded = frame(change.data, event=change.kind, id=change.version)
    return encoded


def comment(text):
    """A comment line, which EventSource ignores: used as the heartbeat."""
    return f": {text}\n\n".encode()


@bp.get("/api/jobs/sse")
@admin_api
def stream():
    """The live stream of job changes."""
    app = current_app._get_current_object()
    engine = app.extensions["jobs"]
    accounts = app.extensions["accounts"]
    sid = current_user.sid
    heartbeat = app.config["SSE_HEARTBEAT_SECONDS"]
    lifetime = app.config["SSE_MAX_AGE_SECONDS"] * random.uniform(0.9, 1.0)
    _bound_sending(request.environ.get("gunicorn.socket"), app.config["SSE_SEND_TIMEOUT_SECONDS"])

    def signed_in():
        user = accounts.user_for_session(sid)
        return user is not None and user.is_admin

    def events():
        # Subscribed here, not in the view: a response that is never iterated
        # (HEAD, a client gone before the body) then holds no subscription.
        subscription = engine.subscribe()
        try:
            yield frame(event=None, retry=RETRY_MS)
            snapshot, subscription.snapshot = subscription.snapshot, None
            yield frame(snapshot, event="snapshot", id=snapshot["version"])
            shown = _health(snapshot["scheduler"])
            snapshot = None  # not kept for the stream's whole life
            ends_at = time.monotonic() + lifetime
            last_sent = last_checked = time.monotonic()
            while not subscription.closed:
                now = time.monotonic()
                if now >= ends_at:
                    return
                if now - last_checked >= heartbeat:
                    # Once a heartbeat interval, however busy the stream: signing
                    # out elsewhere ends it within one interval.
                    if not signed_in():
                        yield frame({"reason": "signed out"}, event="logout")
                        return
                    # The engine publishes the scheduler's state when it starts or
                    # stops, not when saving to the database starts or stops failing:
                    # look, so the status bar says so within one interval.
                    info = engine.scheduler_info()
                    if _health(info) != shown:
                        shown = _health(info)
                        yield frame(info, event="scheduler")
                        last_sent = time.monotonic()
                    last_checked = now
                wait = min(last_sent + heartbeat, last_checked + heartbeat, ends_at) - now
                changes = subscription.get(timeout=max(0.0, wait))
                if changes == RESYNC:
                    snapshot = engine.snapshot()
                    shown = _health(snapshot["scheduler"])
                    yield frame(snapshot, event="snapshot", id=snapshot["version"])
                    snapshot = None
                    last_sent = time.monotonic()
                    continue
                if changes:
                    for change in changes:
                        if change.kind == "scheduler":
                            shown = _health(change.data)
                    if len(changes) == 1:  # the usual case: one change, its shared bytes
                        yield event_frame(changes[0])
                    else:
                        yield b"".join([event_frame(change) for change in changes])
                    last_sent = time.monotonic()
                elif time.monotonic() - last_sent >= heartbeat:
                    yield comment("heartbeat")
                    last_sent = time.monotonic()
        finally:
            subscription.close()

    # direct_passthrough: the bytes go out as they are, with no encoding layer (and
    # no extra frame in every waiting stream's stack).
    response = Response(events(), mimetype="text/event-stream", direct_passthrough=True)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.headers["Content-Encoding"] = "identity"
    return response


def _bound_sending(sock, timeout):
    """A client that stops reading must not hold the stream (and its greenlet)
    forever: a send that makes no progress for ``timeout`` seconds fails, and the
    server drops the connection.  A small send buffer makes that happen soon
    after the client stops, and bounds what it holds meanwhile."""
    if sock is None:  # not under gunicorn (tests, the development server)
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        sock.settimeout(timeout)
    except OSError:  # already closed: the first write will say so
        pass


def _health(scheduler):
    """What the status bar shows about saving to the database."""
    return scheduler.get("persistence_ok"), scheduler.get("persistence_error")
