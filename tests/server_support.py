"""Helpers for tests that run the real server: gunicorn with the gevent worker on a
free loopback port, a signed-in HTTP session, and an event-stream reader.

Everything here uses the standard library only and talks to 127.0.0.1 only.
Every wait is bounded, and every process a test starts is ended by ``running_server``.
"""

import contextlib
import http.client
import http.cookiejar
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
HOST = "127.0.0.1"
READY_SECONDS = 20.0
STOP_SECONDS = 30.0

# Settings a developer's shell might carry that would change what the server does.
_SCRUBBED = (
    "HOST",
    "PORT",
    "SECRET_KEY",
    "GUNICORN_CMD_ARGS",
    "WEB_CONCURRENCY",
    "XDG_RUNTIME_DIR",
)


def free_port():
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout, interval=0.05, message="condition"):
    """Call ``predicate`` until it returns something true; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} not met within {timeout} s")
        time.sleep(interval)


class Server:
    """One gunicorn master and its workers, started with ``start()``, ended with ``stop()``."""

    def __init__(self, instance, home, *, name="server", workers=1, scheduler=True, env=None):
        self.instance = Path(instance)
        self.home = Path(home)
        self.name = name
        self.workers = workers
        self.scheduler = scheduler
        self.extra_env = dict(env or {})
        self.port = None
        self.proc = None
        self.log_path = self.home / f"{name}.log"
        self.exit_seconds = None  # how long the master took to exit after stop()'s SIGTERM

    @property
    def base_url(self):
        return f"http://{HOST}:{self.port}"

    def environment(self):
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env = {k: v for k, v in env.items() if not k.startswith("JOBS_")}
        env.update(
            HOST=HOST,
            PORT=str(self.port),
            HOME=str(self.home),
            JOBS_INSTANCE_PATH=str(self.instance),
            JOBS_DEMO="1",
            JOBS_WORKERS=str(self.workers),
            JOBS_SCHEDULER="1" if self.scheduler else "0",
            JOBS_LEASE_SECONDS="1",
            JOBS_SSE_HEARTBEAT="0.5",
            JOBS_SSE_MAX_AGE="120",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self, attempts=3):
        """Start on a free port and wait until every worker answers; retry if the port
        was taken between finding it and binding it."""
        for _ in range(attempts):
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                log.write(f"--- start on port {self.port}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
                    cwd=REPO,
                    env=self.environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, ended as a whole
                )
            try:
                self._wait_ready()
                return self
            except RuntimeError:
                if "Address already in use" not in self.output():
                    raise
                self._end_group()
        raise RuntimeError(f"{self.name}: no free port after {attempts} attempts")

    def _wait_ready(self):
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.output()}")
            booted = self.output().count("Booting worker with pid") >= self.workers
            if booted and _answers(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {READY_SECONDS} s:\n{self.output()}")

    def output(self):
        """Everything the server wrote to its console so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def terminate(self):
        """Send SIGTERM to the master only (as a service manager would)."""
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout=STOP_SECONDS):
        """The master's exit code, or None if it is still running after ``timeout``."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=STOP_SECONDS):
        """SIGTERM the master, SIGKILL the group if it outlives ``timeout``; then make
        sure no process of the group is left.  Returns the master's exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            started = time.monotonic()
            self.terminate()
            code = self.wait_exit(timeout)
            if code is not None and self.exit_seconds is None:
                self.exit_seconds = time.monotonic() - started
        self._end_group()
        return self.proc.returncode

    def _end_group(self):
        """Kill whatever is left in the server's own process group and reap the master."""
        pgid = self.proc.pid  # start_new_session: the master leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_alive(pgid), f"processes of {self.name} outlived it"


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(port):
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/login")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def running_server(instance, home, **options):
    """A started ``Server``; it is stopped, and its processes gone, when the block ends."""
    server = Server(instance, home, **options)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# -- HTTP ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Session:
    """A browser-like client for one server: cookies kept, redirects not followed,
    no proxy (loopback only)."""

    def __init__(self, base_url):
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(self.jar),
            _NoRedirect(),
        )
        self.csrf = None

    def request(self, method, path, *, data=None, headers=None, timeout=10):
        body = None
        headers = dict(headers or {})
        if isinstance(data, dict):
            body = urllib.parse.urlencode(data).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif data is not None:
            body = data
        req = urllib.request.Request(
            self.base_url + path, data=body, headers=headers, method=method
        )
        try:
            with self.opener.open(req, timeout=timeout) as response:
                return Reply(response.status, _lower(response.headers), response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, _lower(error.headers), error.read())

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post_json(self, path, payload=None):
        """A fetch-style post: JSON in and out, the CSRF token in X-CSRFToken."""
        return self.request(
            "POST",
            path,
            data=json.dumps(payload or {}).encode(),
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "X-CSRFToken": self.csrf,
            },
        )

    def login(self, username, password):
        """Sign in through the form; keeps the page's CSRF token in ``self.csrf``."""
        token = _field(self.get("/login").text, r'name="csrf_token" value="([^"]+)"')
        reply = self.request(
            "POST",
            "/login",
            data={"username": username, "password": password, "csrf_token": token},
        )
        assert reply.status == 302, f"sign-in failed: {reply.status} {reply.text[:300]}"
        page = self.get("/admin/jobs")
        assert page.status == 200, page.status
        self.csrf = _field(page.text, r'data-csrf-token="([^"]+)"')
        return reply

    def cookie_header(self):
        req = urllib.request.Request(self.base_url + "/")
        self.jar.add_cookie_header(req)
        return req.get_header("Cookie")

    def connection(self):
        """A keep-alive connection carrying this session's cookies: it stays with
        the worker that accepted it for as long as it is reused."""
        return KeptConnection(self)

    def stream(self, path="/api/jobs/sse", **kwargs):
        return EventStream(self.base_url, path, cookie=self.cookie_header(), **kwargs)


class KeptConnection:
    """One persistent HTTP/1.1 connection with the session's cookies and token."""

    def __init__(self, session):
        self.session = session
        host, port = session.base_url.split("//")[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def request(self, method, path, payload=None):
        headers = {"Cookie": self.session.cookie_header(), "Accept": "application/json"}
        body = None
        if method == "POST":
            body = json.dumps(payload or {}).encode()
            headers["Content-Type"] = "application/json"
            headers["X-CSRFToken"] = self.session.csrf
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        reply = Reply(response.status, _lower(response.headers), response.read())
        assert response.getheader("Connection", "").lower() != "close", "connection not kept"
        return reply

    def close(self):
        self.conn.close()


def _lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def _field(html, pattern):
    match = re.search(pattern, html)
    assert match, f"no match for {pattern!r}"
    return match.group(1)


def read_password(instance):
    return (Path(instance) / "initial-admin-password").read_text().strip()


# -- Server-Sent Events ---------------------------------------------------------------


@dataclass
class Message:
    """One dispatched block of the stream: an event, a bare ``retry:``, or a comment."""

    received_at: float  # time.monotonic() when its last byte arrived
    event: str | None = None
    id: str | None = None
    data: str | None = None
    retry: int | None = None
    comment: str | None = None
    raw: bytes = b""

    @property
    def json(self):
        return json.loads(self.data)


@dataclass
class _Block:
    fields: list = field(default_factory=list)
    comments: list = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)


END = object()  # put on the queue when the stream ended


class EventStream:
    """``GET`` an event stream on a raw socket and parse it on a reader thread.

    Each message is timestamped as it arrives, so latencies are measured at the
    socket, not when the test gets round to looking.  The HTTP response (status
    line, headers, chunked body) is decoded here, which keeps the per-read timeout
    on the socket harmless: a timed-out ``recv`` is simply retried.
    """

    def __init__(self, base_url, path, *, cookie=None, last_event_id=None, timeout=10):
        host, port = base_url.split("//")[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(0.2)
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
        ]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.messages = queue.Queue()
        self.seen = []  # every message taken by next(), for assertion messages
        self.ended_at = None
        self.ended_by = None  # "eof" (socket closed) or "chunked end" (last chunk sent)
        self._stopping = False
        self._buffer = b""
        self.status = None
        self.headers = {}
        try:
            self._read_head(deadline=time.monotonic() + timeout)
        except BaseException:
            self.sock.close()
            raise
        self._thread = threading.Thread(target=self._read_body, daemon=True)
        self._thread.start()

    # The head is read before the thread starts, so a test sees status and headers.
    def _read_head(self, deadline):
        while b"\r\n\r\n" not in self._buffer:
            if time.monotonic() >= deadline:
                raise TimeoutError("no response head")
            chunk = self._recv()
            if chunk == b"":
                raise ConnectionError("closed before the response head")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def _recv(self):
        """Some bytes into the buffer: b"" at EOF, None when nothing came in 0.2 s."""
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            return b""
        self._buffer += chunk
        return chunk

    def _fill(self):
        """Wait for more bytes; False once the stream has ended or close() was called."""
        while not self._stopping:
            chunk = self._recv()
            if chunk == b"":
                self.ended_by = "eof"
                return False
            if chunk is not None:
                return True
        return False

    def _body_bytes(self):
        """The decoded body, piece by piece, until the stream ends or close()."""
        if "chunked" not in self.headers.get("transfer-encoding", "").lower():
            while True:
                if self._buffer:
                    data, self._buffer = self._buffer, b""
                    yield data
                if not self._fill():
                    return
        while True:
            end_of_size = self._buffer.find(b"\r\n")
            if end_of_size < 0:
                if not self._fill():
                    return
                continue
            size = int(self._buffer[:end_of_size].split(b";")[0], 16)
            start = end_of_size + 2
            while len(self._buffer) < start + size + 2:
                if not self._fill():
                    return
            data = self._buffer[start : start + size]
            self._buffer = self._buffer[start + size + 2 :]
            if size == 0:
                self.ended_by = "chunked end"
                return
            yield data

    def _read_body(self):
        block = _Block()
        pending = b""
        try:
            for data in self._body_bytes():
                pending += data
                # A "\r" at the very end may be half of a "\r\n": keep it for the next read.
                held = b"\r" if pending.endswith(b"\r") else b""
                *lines, pending = re.split(rb"\r\n|\r|\n", pending[: len(pending) - len(held)])
                pending += held
                for line in lines:
                    block.raw += line + b"\n"
                    if line == b"":
                        self._dispatch(block)
                        block = _Block()
                    elif line.startswith(b":"):
                        block.comments.append(line[1:].decode().strip())
                    else:
                        name, _, value = line.decode().partition(":")
                        block.fields.append((name, value[1:] if value.startswith(" ") else value))
        finally:
            self.ended_at = time.monotonic()
            self.messages.put(END)

    def _dispatch(self, block):
        now = time.monotonic()
        raw = bytes(block.raw)
        for text in block.comments:
            self.messages.put(Message(now, comment=text, raw=raw))
        if not block.fields:
            return
        message = Message(now, raw=raw)
        data = []
        for name, value in block.fields:
            if name == "event":
                message.event = value
            elif name == "id":
                message.id = value
            elif name == "data":
                data.append(value)
            elif name == "retry" and value.isdigit():
                message.retry = int(value)
        message.data = "\n".join(data) if data else None
        self.messages.put(message)

    def next(self, timeout):
        """The next message, None if none came within ``timeout``, END once it ended."""
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            return None
        if message is END:
            self.messages.put(END)  # stays ended for later calls
            return END
        self.seen.append(message)
        return message

    def wait_for(self, predicate, timeout, what="a matching message"):
        """The first message for which ``predicate`` is true, waiting at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            message = self.next(left)
            if message is END:
                raise AssertionError(f"the stream ended before {what}; saw {self._recent()}")
            if message is not None and predicate(message):
                return message
        raise AssertionError(f"no {what} within {timeout} s; saw {self._recent()}")

    def wait_end(self, timeout):
        """Drain until the stream ends; the monotonic time it ended, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.next(max(0.0, deadline - time.monotonic())) is END:
                return self.ended_at
        return None

    def _recent(self, count=6):
        return [m.raw.decode(errors="replace")[:200] for m in self.seen[-count:]]

    def close(self):
        self._stopping = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self.sock.close()


def job_event(name, **expected):
    """A predicate: an ``event: job`` for ``name`` whose data has ``expected`` values."""

    def matches(message):
        if message.event != "job":
            return False
        data = message.json
        return data["name"] == name and all(data.get(k) == v for k, v in expected.items())

    return matches


# -- what the real-server tests share ---------------------------------------------------


def report(what, seconds):
    """Print a measured figure (seen with ``pytest -s`` or ``-rP``)."""
    print(f"measured: {what}: {seconds * 1000:.1f} ms")


def signed_in(server):
    """A ``Session`` signed in as the first admin."""
    session = Session(server.base_url)
    session.login("admin", read_password(server.instance))
    return session


def open_stream(session):
    """A stream past its opening ``retry:`` and ``snapshot``; returns (stream, snapshot)."""
    stream = session.stream()
    try:
        assert stream.status == 200, stream.status
        first = stream.next(5)
        assert first is not None and first.retry is not None, first
        snapshot = stream.next(5)
        assert snapshot is not None and snapshot.event == "snapshot", snapshot
    except BaseException:
        stream.close()
        raise
    return stream, snapshot.json
