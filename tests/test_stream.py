"""The live stream at /api/jobs/sse: its wire format, its events, and its end.

The app fixture sends a heartbeat after 0.2 s of silence, so every read below
returns within a fraction of a second; each read loop is bounded as well."""

import json
import time
from contextlib import contextmanager
from functools import partial

import pytest
from werkzeug.security import generate_password_hash

import accounts
from routes.stream import comment, frame

JOB_KEYS = {"name", "category", "description", "status", "interval", "paused", "run_count"}


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch):
    """scrypt takes a tenth of a second a hash; these tests are about the stream."""
    quick = partial(generate_password_hash, method="pbkdf2:sha256:1")
    monkeypatch.setattr(accounts, "generate_password_hash", quick)


# -- the wire format ------------------------------------------------------------------------


def test_a_frame_is_event_id_and_data_lines_then_a_blank_line():
    assert frame({"name": "demo_tick"}, event="job", id=7) == (
        b'event: job\nid: 7\ndata: {"name":"demo_tick"}\n\n'
    )


def test_a_retry_frame_is_one_line():
    assert frame(retry=3000) == b"retry: 3000\n\n"


def test_every_field_comes_in_wire_order():
    assert frame([1, 2], event="snapshot", id=0, retry=1500) == (
        b"retry: 1500\nevent: snapshot\nid: 0\ndata: [1,2]\n\n"
    )


def test_a_newline_inside_a_string_stays_on_one_data_line():
    message = frame({"error": "line one\nline two\r\n"}, event="job", id=3)

    assert message == b'event: job\nid: 3\ndata: {"error":"line one\\nline two\\r\\n"}\n\n'
    assert message.count(b"\ndata: ") == 1


def test_text_is_sent_as_utf8():
    assert frame({"message": "zone \u00e9t\u00e9 \u2713"}) == (
        'data: {"message":"zone \u00e9t\u00e9 \u2713"}\n\n'.encode()
    )


def test_a_heartbeat_is_a_comment_line():
    assert comment("heartbeat") == b": heartbeat\n\n"


# -- reading a stream ------------------------------------------------------------------------


class Stream:
    """An open event stream, read one message at a time."""

    def __init__(self, response):
        self.response = response
        self._chunks = iter(response.response)
        self._buffer = b""
        self.ended = False

    def raw(self, timeout=2.0):
        """The next message's bytes, blank line included; None once the stream ended."""
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self._buffer:
            assert time.monotonic() < deadline, "no message in time"
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self.ended = True
                assert self._buffer == b"", f"stream ended inside a message: {self._buffer!r}"
                return None
        message, self._buffer = self._buffer.split(b"\n\n", 1)
        return message + b"\n\n"

    def next(self, timeout=2.0):
        """The next message as a dict of its fields (``comment`` for a comment line);
        None once the stream ended."""
        raw = self.raw(timeout)
        if raw is None:
            return None
        fields = {}
        for line in raw.decode().rstrip("\n").split("\n"):
            name, _, value = line.partition(": ")
            fields["comment" if name == "" else name] = value
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
        return fields

    def next_event(self, timeout=2.0):
        """The next message that is not a heartbeat."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.next(timeout)
            if message is None or "comment" not in message:
                return message
        raise AssertionError("only heartbeats came")

    def until_end(self, timeout=2.0):
        """Every message until the stream ends by itself."""
        deadline = time.monotonic() + timeout
        messages = []
        while (message := self.next(max(0.01, deadline - time.monotonic()))) is not None:
            messages.append(message)
        return messages


@contextmanager
def open_stream(client, **kwargs):
    response = client.get("/api/jobs/sse", buffered=False, **kwargs)
    try:
        yield Stream(response)
    finally:
        response.close()


@contextmanager
def opened(client):
    """A stream already past its ``retry:`` and snapshot."""
    with open_stream(client) as stream:
        assert "retry" in stream.next()
        assert stream.next()["event"] == "snapshot"
        yield stream


def post(client, path, **kwargs):
    headers = {"X-CSRFToken": client.csrf, "Accept": "application/json"}
    response = client.post(path, headers=headers, **kwargs)
    assert response.status_code < 300, response.json
    return response


def without_heartbeat(snapshot):
    scheduler = {k: v for k, v in snapshot["scheduler"].items() if k != "heartbeat_at"}
    return {**snapshot, "scheduler": scheduler}


# -- opening ----------------------------------------------------------------------------------


def test_the_stream_is_sent_as_an_uncompressed_event_stream(admin):
    with open_stream(admin) as stream:
        response = stream.response
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert response.headers.get("Content-Encoding", "identity") == "identity"
        assert "Content-Length" not in response.headers
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_stream_opens_with_retry_then_a_snapshot_of_every_job(admin):
    with open_stream(admin) as stream:
        assert stream.raw() == b"retry: 3000\n\n"
        snapshot = stream.next()
        listed = admin.get("/api/jobs").json

    assert snapshot["event"] == "snapshot"
    assert snapshot["id"] == str(snapshot["data"]["version"])
    assert without_heartbeat(snapshot["data"]) == without_heartbeat(listed)


def test_a_reconnect_starts_again_from_a_fresh_snapshot(admin):
    with opened(admin) as stream:
        post(admin, "/api/jobs/demo_tick/pause")
        last_id = stream.next_event()["id"]

    with open_stream(admin, headers={"Last-Event-ID": last_id}) as stream:
        assert "retry" in stream.next()
        snapshot = stream.next()

    assert snapshot["event"] == "snapshot"
    assert snapshot["id"] == last_id
    tick = next(j for j in snapshot["data"]["jobs"] if j["name"] == "demo_tick")
    assert tick["status"] == "paused"


# -- changes ------------------------------------------------------------------------------------


def test_a_control_arrives_as_a_job_event_with_a_later_id(admin):
    with open_stream(admin) as stream:
        stream.next()
        snapshot = stream.next()

        post(admin, "/api/jobs/demo_tick/pause")
        event = stream.next_event()

    assert event["event"] == "job"
    assert int(event["id"]) > int(snapshot["id"])
    assert set(event["data"]) >= JOB_KEYS
    assert event["data"]["name"] == "demo_tick"
    assert event["data"]["status"] == "paused"
    assert event["data"]["next_run"] is None


@pytest.mark.parametrize(
    ("control", "body", "expected"),
    [
        ("resume", None, {"status": "idle", "paused": False}),
        ("interval", {"interval": "5m"}, {"interval": "5m"}),
        ("reset", None, {"interval": "5s"}),
    ],
)
def test_each_control_is_streamed(admin, control, body, expected):
    post(admin, "/api/jobs/demo_tick/pause")
    post(admin, "/api/jobs/demo_tick/interval", json={"interval": "1m"})

    with opened(admin) as stream:
        post(admin, f"/api/jobs/demo_tick/{control}", json=body)
        event = stream.next_event()

    assert event["event"] == "job"
    assert event["data"]["name"] == "demo_tick"
    assert expected.items() <= event["data"].items()


def test_a_run_is_streamed_until_it_ends(admin, app):
    with opened(admin) as stream:
        post(admin, "/api/jobs/demo_fail/run")
        app.extensions["jobs"].wait_idle()
        ids, data = [], None
        while data is None or data["status"] == "running":
            event = stream.next_event()
            ids.append(int(event["id"]))
            data = event["data"]

    assert ids == sorted(ids)
    assert data["name"] == "demo_fail"
    assert data["status"] == "error"
    assert data["last_error"] == "demo failure"
    assert data["run_count"] == 1


def test_the_scheduler_stopping_is_streamed(admin, app, clock):
    engine = app.extensions["jobs"]
    with opened(admin) as stream:
        clock.advance(401 * 86400)  # the lease runs out
        engine.step()
        event = stream.next_event()

    assert event["event"] == "scheduler"
    assert event["data"]["running"] is False
    assert event["id"].isdigit()


def test_a_client_that_falls_behind_gets_a_fresh_snapshot(admin, app):
    engine = app.extensions["jobs"]
    engine.bus.max_pending = 3
    names = engine.registry.names()[:4]
    with opened(admin) as stream:
        for name in names:
            post(admin, f"/api/jobs/{name}/pause")
        event = stream.next_event()

    assert event["event"] == "snapshot"
    paused = {job["name"] for job in event["data"]["jobs"] if job["paused"]}
    assert paused == set(names)
    assert event["id"] == str(event["data"]["version"])


# -- heartbeats and the end of a stream -----------------------------------------------------------


def test_a_heartbeat_comes_when_nothing_happens(admin, app):
    with opened(admin) as stream:
        started = time.monotonic()
        raw = stream.raw()
        waited = time.monotonic() - started

    assert raw == b": heartbeat\n\n"
    assert waited < 1.0
    assert waited >= app.config["SSE_HEARTBEAT_SECONDS"] * 0.5


def test_the_stream_ends_by_itself_after_its_maximum_age(admin, app):
    app.config["SSE_MAX_AGE_SECONDS"] = 0.5
    started = time.monotonic()
    with opened(admin) as stream:
        rest = stream.until_end(timeout=3)
    lasted = time.monotonic() - started

    assert stream.ended
    assert all(message == {"comment": "heartbeat"} for message in rest)
    assert 0.4 <= lasted < 2.0


def test_closing_the_stream_releases_its_subscription(admin, app):
    bus = app.extensions["jobs"].bus
    before = bus.subscriber_count

    with opened(admin):
        assert bus.subscriber_count == before + 1

    assert bus.subscriber_count == before


def test_a_stream_closed_at_once_releases_its_subscription(admin, app):
    bus = app.extensions["jobs"].bus
    before = bus.subscriber_count

    response = admin.get("/api/jobs/sse", buffered=False)
    response.close()

    assert bus.subscriber_count == before


def test_a_head_request_leaves_no_subscription_behind(admin, app):
    bus = app.extensions["jobs"].bus
    before = bus.subscriber_count

    for _ in range(3):
        response = admin.head("/api/jobs/sse")
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        response.close()

    assert bus.subscriber_count == before


def test_many_streams_opened_and_closed_leave_no_subscription_behind(admin, app):
    bus = app.extensions["jobs"].bus
    before = bus.subscriber_count

    for _ in range(20):
        with opened(admin) as stream:
            post(admin, "/api/jobs/demo_tick/pause")
            stream.next_event()
            post(admin, "/api/jobs/demo_tick/resume")

    assert bus.subscriber_count == before


def test_a_stream_that_ended_by_itself_releases_its_subscription(admin, app):
    bus = app.extensions["jobs"].bus
    before = bus.subscriber_count
    app.config["SSE_MAX_AGE_SECONDS"] = 0.3

    with opened(admin) as stream:
        stream.until_end()
        assert bus.subscriber_count == before


def test_signing_out_elsewhere_ends_the_stream_within_a_heartbeat(app, admin):
    other_tab = app.test_client()
    other_tab.set_cookie("codexdns_session", admin.get_cookie("codexdns_session").value)

    with opened(admin) as stream:
        assert other_tab.post("/logout", data={"csrf_token": admin.csrf}).status_code == 302
        signed_out = time.monotonic()
        messages = stream.until_end()
        ended = time.monotonic() - signed_out

    assert messages[-1]["event"] == "logout"
    assert all("comment" in m for m in messages[:-1])
    assert ended < app.config["SSE_HEARTBEAT_SECONDS"] * 2 + 0.3


def test_signing_out_ends_a_busy_stream_as_soon_as_an_idle_one(app, admin):
    """Changes that keep coming must not keep a signed-out stream alive."""
    engine = app.extensions["jobs"]
    heartbeat = app.config["SSE_HEARTBEAT_SECONDS"] = 0.1
    with admin.session_transaction() as session:
        sid = session["_user_id"]

    with opened(admin) as stream:
        app.extensions["accounts"].end_session(sid)
        signed_out = time.monotonic()
        events = []
        for turn in range(12):  # another admin keeps toggling a job, for 0.6 s in all
            time.sleep(heartbeat / 2)
            (engine.pause if turn % 2 == 0 else engine.resume)("demo_tick", user="other")
            message = stream.next_event()
            if message is None or message["event"] == "logout":
                break
            events.append(message)
        took = time.monotonic() - signed_out

    assert message is not None and message["event"] == "logout", f"{len(events)} events later"
    assert took < heartbeat * 4


def test_ending_the_session_ends_the_stream(app, admin):
    with admin.session_transaction() as session:
        sid = session["_user_id"]

    with opened(admin) as stream:
        app.extensions["accounts"].end_session(sid)
        messages = stream.until_end()

    assert messages[-1] == {"event": "logout", "data": {"reason": "signed out"}}


def test_a_password_change_ends_the_stream(app, admin, runner):
    with opened(admin) as stream:
        runner.invoke(args=["users", "passwd", "admin", "--password", "a new password"])
        messages = stream.until_end()

    assert messages[-1]["event"] == "logout"


def test_open_streams_end_when_the_engine_stops(admin, app):
    engine = app.extensions["jobs"]
    with opened(admin) as stream:
        started = time.monotonic()
        engine.stop(grace=1)
        stream.until_end(timeout=1)
        took = time.monotonic() - started

    assert stream.ended
    assert took < 0.5
    assert engine.bus.subscriber_count == 0


def test_a_stream_opened_while_the_server_stops_gets_its_snapshot_then_ends(admin, app):
    app.extensions["jobs"].stop(grace=1)

    with open_stream(admin) as stream:
        messages = stream.until_end(timeout=1)

    assert [m.get("event") for m in messages] == [None, "snapshot"]
    assert "retry" in messages[0]
