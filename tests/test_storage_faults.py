"""When the database fails: locked by another process, unwritable (a full disk, a write
error), or corrupt at start.  Controls wait or answer 503 and change nothing; jobs keep
running; the page says saving is failing, in words, until it works again."""

import contextlib
import hashlib
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import ADMIN_PASSWORD, admin_client, app_on, take_the_lease_by_hand
from server_support import (
    GUNICORN,
    HOST,
    REPO,
    Session,
    free_port,
    read_password,
    running_server,
    wait_until,
)
from test_stream import opened

from scheduler import Engine, JobRegistry, Store, StoreError
from scheduler.database import Database

# -- faults --------------------------------------------------------------------------

# A second process that takes the database's write lock and holds it until its stdin
# closes or ``hold`` seconds pass, whichever comes first; it prints the monotonic time
# (system-wide on Linux) at which it let go.
LOCKER = r"""
import select, sqlite3, sys, time
path, mode, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
conn = sqlite3.connect(path, isolation_level=None, timeout=10)
conn.execute(f"BEGIN {mode}")
print("locked", flush=True)
select.select([sys.stdin], [], [], hold)
conn.execute("COMMIT")
print(f"released {time.monotonic()}", flush=True)
"""


class HeldLock:
    """The write lock of a database, held by another process."""

    def __init__(self, db_path, hold, mode):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(db_path), mode, str(hold)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip()  # bounded by the child's own timeout
        assert line == "locked", f"the locking process said {line!r}"
        self.released_at = None

    def release(self):
        """Let go (if it has not already) and return the moment it did."""
        if self.released_at is None:
            self.proc.stdin.close()
            line = self.proc.stdout.readline().strip()
            assert line.startswith("released"), f"the locking process said {line!r}"
            self.released_at = float(line.split()[1])
            self.proc.wait(timeout=10)
        return self.released_at

    def end(self):
        with contextlib.suppress(Exception):
            self.release()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()
        with contextlib.suppress(OSError):
            self.proc.stdin.close()


@contextlib.contextmanager
def lock_held(db_path, hold=30.0, mode="IMMEDIATE"):
    """The database's write lock held by another process for the block (at most
    ``hold`` seconds)."""
    lock = HeldLock(db_path, hold, mode)
    try:
        yield lock
    finally:
        lock.end()


class TinyDisk:
    """A real, small filesystem (tmpfs) that a test fills and frees."""

    def __init__(self, path):
        self.path = path
        self.filler = path / "filler"

    def fill(self):
        """Write until the filesystem refuses: ENOSPC."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            with contextlib.suppress(OSError):
                for _ in range(100_000):  # bounded: 400 MB, far beyond the disk's size
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        free = os.statvfs(self.path)
        assert free.f_bavail == 0, "the disk is not full"

    def free(self):
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 MiB tmpfs mounted for the test and always unmounted after it."""
    path = tmp_path / "disk"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    disk = TinyDisk(path)
    try:
        yield disk
    finally:
        disk.free()
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            # Something still holds a file open there; detach it all the same.
            subprocess.run(["umount", "-l", str(path)], check=True)


class FailingWrites:
    """A write error injected at the store: while ``on``, every write transaction
    fails as SQLite fails it when the disk does."""

    def __init__(self, database, monkeypatch, message="disk I/O error", code=10):
        self.on = False
        self.message, self.code = message, code
        connect = database._connection
        fault = self

        class Connection:
            def __init__(self, conn):
                self._conn = conn

            def execute(self, sql, *args):
                if fault.on and sql.startswith("BEGIN IMMEDIATE"):
                    error = sqlite3.OperationalError(fault.message)
                    error.sqlite_errorcode = fault.code
                    raise error
                return self._conn.execute(sql, *args)

            def __getattr__(self, name):
                return getattr(self._conn, name)

        monkeypatch.setattr(database, "_connection", lambda: Connection(connect()))


# -- an app on a given folder, with jobs that say when they start --------------------


class Starts:
    """Which runs of the test jobs started, in order, and a way to wait for the next."""

    def __init__(self):
        self.triggers = []
        self.times = []  # time.monotonic() of each start
        self.event = threading.Event()

    def body(self, ctx):
        self.times.append(time.monotonic())
        self.triggers.append((ctx.job, ctx.trigger))
        self.event.set()
        return "done"

    def wait(self, count, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.triggers) < count:
            assert time.monotonic() < deadline, f"only {self.triggers} started"
            self.event.wait(0.05)
            self.event.clear()
        return self.triggers


@pytest.fixture
def starts():
    return Starts()


@pytest.fixture
def make_app(tmp_path, clock, starts):
    """``make_app(instance=None, **config)``: the app with jobs ``tick`` (every minute)
    and ``zones`` (every 5 minutes), a signed-in admin client, a hand-driven scheduler."""
    from extensions import limiter

    apps = []

    def make(instance=None, **config):
        registry = JobRegistry()
        registry.add(starts.body, name="tick", category="test", interval="1m", description="tick")
        registry.add(starts.body, name="zones", category="test", interval="5m", description="zones")
        app = app_on(
            instance or tmp_path / "instance",
            clock,
            JOBS_REGISTRY=registry,
            SSE_HEARTBEAT_SECONDS=0.1,
            SSE_MAX_AGE_SECONDS=10.0,
            **config,
        )
        limiter.reset()
        apps.append(app)
        app.extensions["accounts"].create_user("admin", ADMIN_PASSWORD, admin=True)
        take_the_lease_by_hand(app.extensions["jobs"])
        client = admin_client(app)
        client.db_path = Path(app.instance_path) / "jobs.db"
        return client

    yield make
    for app in apps:
        with contextlib.suppress(StoreError):
            app.extensions["jobs"].stop(grace=2)
        app.extensions["accounts"].close()
        app.extensions["jobs"].store.close()


def post(client, path, json=None):
    headers = {"X-CSRFToken": client.csrf, "Accept": "application/json"}
    return client.post(path, headers=headers, json=json if json is not None else {})


def scheduler_info(client):
    return client.get("/api/jobs").json["scheduler"]


def status_bar(client):
    """The persistence part of the page's status bar: None while hidden, else its text."""
    page = client.get("/admin/jobs").get_data(as_text=True)
    match = re.search(r'<span id="persistence-state"([^>]*)>([^<]*)</span>', page)
    assert match, "no #persistence-state on the page"
    return None if "hidden" in match.group(1) else match.group(2)


def on_disk(db_path):
    """What another process would read: the saved overrides and audit lines."""
    with sqlite3.connect(db_path) as conn:
        settings = conn.execute("SELECT job, interval_seconds, paused FROM job_settings").fetchall()
        audit = conn.execute("SELECT job, action FROM audit").fetchall()
    return settings, audit


def assert_unchanged(client, before):
    """The job, the saved overrides and the audit trail are as they were."""
    job_before, disk_before = before
    job = client.get("/api/jobs/tick").json
    job.pop("runs")
    assert (job["paused"], job["interval"]) == (job_before["paused"], job_before["interval"])
    assert on_disk(client.db_path) == disk_before


def observe(client):
    job = client.get("/api/jobs/tick").json
    job.pop("runs")
    return job, on_disk(client.db_path)


# -- the busy timeout ----------------------------------------------------------------


def test_the_busy_timeout_is_five_seconds_unless_set(monkeypatch):
    import settings

    assert settings.load({})["DB_BUSY_TIMEOUT_SECONDS"] == 5.0
    assert settings.load({"JOBS_DB_BUSY_TIMEOUT": "12.5"})["DB_BUSY_TIMEOUT_SECONDS"] == 12.5
    with pytest.raises(settings.SettingError, match="JOBS_DB_BUSY_TIMEOUT"):
        settings.load({"JOBS_DB_BUSY_TIMEOUT": "soon"})


def test_the_app_opens_the_database_with_the_busy_timeout_it_was_given(make_app):
    client = make_app(DB_BUSY_TIMEOUT_SECONDS=1.5)
    for database in (client.engine.store, client.app.extensions["accounts"]):
        assert database.busy_timeout == 1.5
        assert database._read("PRAGMA busy_timeout")[0][0] == 1500


# -- locked by another process ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["IMMEDIATE", "EXCLUSIVE"])
def test_a_control_waits_for_a_lock_held_by_another_process_then_succeeds(make_app, mode):
    client = make_app()
    with lock_held(client.db_path, hold=1.0, mode=mode) as lock:
        response = post(client, "/api/jobs/tick/pause")
        answered = time.monotonic()
        released = lock.release()

    assert response.status_code == 200, response.json
    assert answered >= released, "the control answered before the other process let go"
    assert response.json["paused"] is True
    assert on_disk(client.db_path) == ([("tick", None, 1)], [("tick", "pause")])


@pytest.mark.slow
def test_a_control_locked_out_past_the_busy_timeout_is_refused_and_changes_nothing(make_app):
    client = make_app(DB_BUSY_TIMEOUT_SECONDS=0.3)
    before = observe(client)
    with lock_held(client.db_path):
        paused = post(client, "/api/jobs/tick/pause")
        interval = post(client, "/api/jobs/tick/interval", json={"interval": "2m"})
        # The page without JavaScript posts a form and gets the page back with the message.
        form = client.post(
            "/api/jobs/tick/pause",
            data={"csrf_token": client.csrf},
            headers={"Accept": "text/html"},
        )
        page = client.get("/admin/jobs").get_data(as_text=True)

    for response in (paused, interval):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        message = response.json["error"]
        assert message.startswith("Nothing was changed")
        assert str(client.db_path) in message
        assert "another program has held its write lock for more than 0.3 s" in message
        assert "JOBS_DB_BUSY_TIMEOUT" in message
    assert (form.status_code, form.headers["Location"]) == (303, "/admin/jobs")
    assert "tick: Nothing was changed" in page
    assert_unchanged(client, before)
    # Once the lock is gone the same control works.
    assert post(client, "/api/jobs/tick/pause").status_code == 200


@pytest.mark.slow
def test_jobs_keep_starting_while_another_process_holds_the_lock(make_app, clock, starts):
    client = make_app()
    engine = client.engine
    engine.writer.start()
    with lock_held(client.db_path) as lock:
        clock.advance(60)
        engine.step()  # tick is due
        # Run Now is acknowledged only once on disk: past the busy timeout, 503.
        assert post(client, "/api/jobs/zones/run").status_code == 503
        assert starts.wait(1) == [("tick", "scheduled")]
        assert client.get("/api/jobs/tick").json["run_count"] == 1
        released = lock.release()
    assert max(starts.times) < released, "the scheduled run waited for the lock"
    # Its records waited for the lock instead; they land once it goes.
    assert engine.writer.flush(timeout=10)
    runs = {job: engine.store.runs(job) for job in ("tick", "zones")}
    assert [(r["trigger"], r["outcome"]) for r in runs["tick"]] == [("scheduled", "ok")]
    assert runs["zones"] == []
    assert scheduler_info(client)["persistence_ok"] is True


@pytest.mark.slow
def test_the_scheduler_runs_jobs_again_after_a_lock_longer_than_its_lease(tmp_path):
    registry = JobRegistry()
    ran = []
    registry.add(
        lambda ctx: ran.append(time.monotonic()),
        name="tick",
        category="t",
        interval="1s",
        description="t",
    )
    store = Store(tmp_path / "jobs.db")
    store.migrate()
    engine = Engine(registry, store, lease_ttl=1.0)
    engine.start()
    try:
        wait_until(lambda: ran, timeout=5, message="a first run")
        with lock_held(store.path) as lock:
            # Renewals wait on the lock past the lease (0.8 s of 1 s): dispatching stops.
            wait_until(lambda: not engine.leader, timeout=5, message="the lead dropped")
            released = lock.release()
        wait_until(
            lambda: any(t > released for t in ran), timeout=5, message="a run after the lock"
        )
    finally:
        engine.stop(grace=1)
        store.close()


# -- unwritable: a write error injected at the store -----------------------------------


def test_a_control_that_cannot_be_saved_answers_503_with_the_reason_and_changes_nothing(
    make_app, monkeypatch
):
    client = make_app()
    fault = FailingWrites(client.engine.store, monkeypatch)
    before = observe(client)
    fault.on = True
    answers = [
        post(client, "/api/jobs/tick/pause"),
        post(client, "/api/jobs/tick/interval", json={"interval": "2m"}),
        post(client, "/api/jobs/tick/reset"),
    ]
    fault.on = False

    for response in answers:
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json["error"] == (
            "Nothing was changed: the change could not be saved. Cannot save to the database "
            f"{client.db_path}: the disk reported an input/output error (SQLite: disk I/O "
            "error). Check the disk and the system log."
        )
    assert_unchanged(client, before)


def test_a_control_that_failed_to_save_is_remembered_by_the_store_until_a_write_works(
    make_app, monkeypatch
):
    client = make_app()
    store = client.engine.store
    fault = FailingWrites(store, monkeypatch, "database or disk is full", code=13)
    fault.on = True
    assert post(client, "/api/jobs/tick/pause").status_code == 503
    assert "the disk holding it is full" in store.write_failure
    fault.on = False
    assert post(client, "/api/jobs/tick/pause").status_code == 200
    assert store.write_failure is None


def test_a_control_that_failed_to_save_turns_the_status_bar_on(make_app, monkeypatch):
    client = make_app()
    fault = FailingWrites(client.engine.store, monkeypatch)
    fault.on = True
    assert post(client, "/api/jobs/tick/pause").status_code == 503
    assert scheduler_info(client)["persistence_ok"] is False
    assert "input/output error" in status_bar(client)


def test_runs_go_on_while_writes_fail_and_the_page_says_so_until_they_work(
    make_app, monkeypatch, clock, starts
):
    client = make_app()
    engine = client.engine
    fault = FailingWrites(engine.store, monkeypatch)
    engine.writer.start()
    assert status_bar(client) is None
    with opened(client) as stream:
        fault.on = True
        clock.advance(60)
        engine.step()  # tick is due
        # Run Now is a control like the others: not on disk, not started, 503.
        refused = post(client, "/api/jobs/zones/run")
        assert refused.status_code == 503
        assert "input/output error" in refused.json["error"]
        assert starts.wait(1) == [("tick", "scheduled")]
        assert engine.job("zones")["status"] == "idle"

        failing = wait_for_event(stream, "scheduler", lambda d: d["persistence_ok"] is False)
        assert "input/output error" in failing["persistence_error"]
        info = scheduler_info(client)
        assert (info["persistence_ok"], info["running"]) == (False, True)
        assert str(client.db_path) in info["persistence_error"]
        text = status_bar(client)
        assert text.startswith("Saving to the database is failing. Cannot save to the database")
        assert "the disk reported an input/output error" in text
        assert "Jobs keep running" in text

        fault.on = False  # the writer's next attempt gets through
        wait_for_event(stream, "scheduler", lambda d: d["persistence_ok"] is True, timeout=5)
    assert status_bar(client) is None
    assert scheduler_info(client)["persistence_error"] is None
    assert engine.writer.flush()
    assert [r["outcome"] for r in engine.store.runs("tick")] == ["ok"]
    assert engine.store.runs("zones") == []


def test_runs_made_during_a_long_fault_are_recorded_once_it_is_over(
    make_app, monkeypatch, clock, starts
):
    client = make_app()
    engine = client.engine
    fault = FailingWrites(engine.store, monkeypatch)
    engine.writer._retry_delay = 0.01  # many attempts in a moment, not seconds apart
    engine.writer._max_delay = 0.01
    engine.writer.start()
    fault.on = True
    clock.advance(60)
    engine.step()
    starts.wait(1)
    # Dozens of attempts fail; the records wait for the fault to clear.
    assert not engine.writer.flush(timeout=0.5)
    assert engine.writer.failing
    fault.on = False
    assert engine.writer.flush(timeout=5)
    assert [r["outcome"] for r in engine.store.runs("tick")] == ["ok"]


def wait_for_event(stream, event, predicate, timeout=3.0):
    """The data of the first ``event`` on ``stream`` that ``predicate`` accepts."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        message = stream.next(timeout=max(0.1, deadline - time.monotonic()))
        assert message is not None, f"the stream ended; saw {seen}"
        seen.append(message.get("event") or message.get("comment"))
        if message.get("event") == event and predicate(message["data"]):
            return message["data"]
    raise AssertionError(f"no such {event} event within {timeout} s; saw {seen}")


# -- unwritable: a full disk -------------------------------------------------------------


@pytest.mark.slow
def test_on_a_full_disk_controls_are_refused_jobs_run_and_it_recovers_when_space_is_freed(
    tiny_disk, make_app, clock, starts
):
    client = make_app(instance=tiny_disk.path / "instance")
    engine = client.engine
    engine.writer.start()
    before = observe(client)
    tiny_disk.fill()

    refused = post(client, "/api/jobs/tick/pause")
    assert refused.status_code == 503
    assert "the disk holding it is full" in refused.json["error"]
    assert "Free some space on that disk." in refused.json["error"]
    clock.advance(60)
    engine.step()
    assert starts.wait(1) == [("tick", "scheduled")]
    wait_until(
        lambda: scheduler_info(client)["persistence_ok"] is False, 3, message="status failing"
    )
    assert "the disk holding it is full" in status_bar(client)

    tiny_disk.free()
    wait_until(lambda: status_bar(client) is None, 5, message="the status bar cleared")
    assert engine.writer.flush()
    assert [r["outcome"] for r in engine.store.runs("tick")] == ["ok"]
    assert_unchanged(client, before)


@pytest.mark.slow
def test_a_real_server_on_a_full_disk_refuses_controls_keeps_running_jobs_and_recovers(
    tiny_disk, tmp_path
):
    instance = tiny_disk.path / "instance"
    # A lease long enough to outlast the fault: a scheduler that cannot renew its lease
    # must stop starting jobs once it lapses (see the lock test above).
    with running_server(instance, tmp_path, env={"JOBS_LEASE_SECONDS": "30"}) as server:
        session = Session(server.base_url)
        session.login("admin", read_password(instance))
        assert session.post_json("/api/jobs/demo_tick/interval", {"interval": "1s"}).status == 200
        stream = session.stream()
        try:
            stream.wait_for(lambda m: m.event == "snapshot", 5, "the snapshot")
            fault_began = time.time()
            tiny_disk.fill()
            failing = stream.wait_for(
                lambda m: m.event == "scheduler" and m.json["persistence_ok"] is False,
                10,
                "a scheduler event saying saving fails",
            )
            assert "the disk holding it is full" in failing.json["persistence_error"]
            refused = session.post_json("/api/jobs/demo_tick/pause")
            assert refused.status == 503, refused.text
            assert "the disk holding it is full" in refused.json()["error"]
            page = session.get("/admin/jobs").text
            assert re.search(r'id="persistence-state" class="persistence-failing" >[^<]*full', page)
            # demo_tick keeps running every second meanwhile.
            count = session.get("/api/jobs/demo_tick").json()["run_count"]
            stream.wait_for(
                lambda m: (
                    m.event == "job"
                    and m.json["name"] == "demo_tick"
                    and m.json["run_count"] > count
                ),
                5,
                "another run of demo_tick",
            )
            fault_over = time.time()
            tiny_disk.free()
            # SQLite can reuse space inside its write-ahead log, so saving may work
            # again (and the stream say so) even before the space is freed; once it
            # is, it works and a fresh stream's snapshot says so.
            wait_until(
                lambda: session.get("/api/jobs").json()["scheduler"]["persistence_ok"],
                10,
                message="saving works again",
            )
        finally:
            stream.close()
        fresh = session.stream()
        try:
            snapshot = fresh.wait_for(lambda m: m.event == "snapshot", 5, "a fresh snapshot")
        finally:
            fresh.close()
        assert snapshot.json["scheduler"]["persistence_ok"] is True
        page = session.get("/admin/jobs").text
        assert '<span id="persistence-state" class="persistence-failing" hidden>' in page
        job = session.get("/api/jobs/demo_tick").json()
        assert job["paused"] is False and job["interval"] == "1s"

        # The runs started while the disk was full are recorded once it is not (the
        # writer gathers records for a moment before each write).
        def recorded_during_the_fault():
            runs = session.get("/api/jobs/demo_tick").json()["runs"]
            return [r for r in runs if fault_began < _epoch(r["started_at"]) < fault_over]

        wait_until(recorded_during_the_fault, 5, message="the runs made during the fault")


def _epoch(iso):
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- corrupt at start ----------------------------------------------------------------------


def _corrupt(path, kind):
    """Make ``path`` a database file damaged in one of the ways disks and people do."""
    if kind == "not a database":
        path.write_bytes(b"these are not the bytes of a database " * 200)
        return
    database = Database(path)
    database._write(lambda c: c.execute("CREATE TABLE filler (x TEXT)"))
    for _ in range(4):
        database._write(lambda c: c.execute("INSERT INTO filler VALUES (?)", ("x" * 3000,)))
    database._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database._connection().execute("PRAGMA journal_mode = DELETE")
    database.close()
    data = bytearray(path.read_bytes())
    if kind == "damaged pages":
        page = int.from_bytes(data[16:18], "big")
        data[page : 2 * page] = b"\xa5" * page  # the schema's first child page
        data[3 * page : 4 * page] = b"\x5a" * page
    else:  # "cut short"
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))


KINDS = ["not a database", "damaged pages", "cut short"]


def corrupt_database(tmp_path, kind):
    """An instance folder whose jobs.db is damaged as ``kind`` says: (the file,
    the SHA-256 of its bytes)."""
    instance = tmp_path / "instance"
    instance.mkdir()
    db_path = instance / "jobs.db"
    _corrupt(db_path, kind)
    return db_path, hashlib.sha256(db_path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", KINDS)
def test_the_app_refuses_a_corrupt_database_naming_it_and_leaves_it_alone(tmp_path, kind):
    from app import create_app

    db_path, digest = corrupt_database(tmp_path, kind)
    instance = db_path.parent

    with pytest.raises(StoreError) as refused:
        create_app({"TESTING": True, "JOBS_INSTANCE_PATH": str(instance)})

    message = str(refused.value)
    assert str(db_path) in message
    assert "Restore it from a backup, or move it away to start afresh." in message
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == digest


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_the_server_will_not_start_on_a_corrupt_database(tmp_path, kind):
    db_path, digest = corrupt_database(tmp_path, kind)
    instance = db_path.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    env.update(
        HOME=str(tmp_path), JOBS_INSTANCE_PATH=str(instance), PORT=str(free_port()), HOST=HOST
    )

    result = subprocess.run(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode != 0
    assert "Not starting: " in result.stderr
    assert str(db_path) in result.stderr
    assert "Restore it from a backup, or move it away to start afresh." in result.stderr
    assert "Traceback" not in result.stderr
    assert "Booting worker" not in result.stderr + result.stdout
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == digest
    assert not (instance / "initial-admin-password").exists()
