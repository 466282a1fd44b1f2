"""The server under load: live streams, churn, a client that stops reading, and
``GET /api/jobs``, ours side by side with a bare gevent broadcaster in the same run.

- ours: the real server (``gunicorn -c gunicorn.conf.py``, one gevent worker, product
  settings, demo jobs on) serving ``bench.sse_app:app``, which is ``wsgi.py``'s app plus a
  1 s job that records its lateness, a daily job the benchmark pauses and resumes, and
  ``/bench/stats``.  One sign-in; its session cookie is reused by every stream.
- reference: ``bench/reference_sse.py`` under one gunicorn gevent worker with the same
  connection limit, keep-alive and access log.  The driver posts two broadcasts a
  second to it, as our 1 s job makes two events a second (started, finished).

Phases (each contender in turn, the other idle):

1. ``GET /api/jobs`` with 100 jobs: wrk from another process (1 thread, 32 connections).
2. fan-out at K streams (100, 1,000, 5,000): time to connect all (every stream has
   its first event), worker RSS per stream, then R rounds: a control (ours: pause or
   resume ``bench_target``; reference: ``POST /broadcast`` of that job's JSON) and the
   time until its event reached each stream (``time.monotonic()`` at the client's
   ``recv``).  Every stream must see every change, in order.
3. churn: 10,000 cycles of connect, first event, close; subscriber count, worker fds
   and RSS before and after, and how long they took to settle.
4. stall: 1,000 reading streams plus 10 that stop reading after their first event
   (2 KiB receive buffer); controls of another job fill the stalled buffers; then R
   rounds measured on the readers; worker RSS, and whether the server ever drops the
   stalled connections (their server-side socket state in /proc/net/tcp).

During all of it ``bench_1s`` records how late it starts (started - slot): reported per
phase.  Load clients are ``bench/sse_client.py`` processes (selectors/epoll), K/2500
rounded up of them.

    .venv/bin/python -m bench.sse_load            # full sizes, about 10 minutes
    .venv/bin/python -m bench.sse_load --quick    # K = 100 and 1,000, short phases
"""

import contextlib
import http.client
import json
import os
import queue
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

NAME = "sse_load"
ROOT = common.ROOT
GUNICORN = Path(sys.executable).parent / "gunicorn"
HOST = "127.0.0.1"
TARGET = "bench_target"
# Paused and resumed to push events at stalled clients (all resumed at the end).
FILLER_JOBS = ("demo_fail", "demo_slow", "dhcp_lease_prune", "dhcp_active_leases")
STREAMS_PER_CLIENT = 2500
WRK_CONNECTIONS = (4, 32)
_SCRUBBED = ("HOST", "PORT", "SECRET_KEY", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY")
PROCESSES = []  # every process started here, killed (whole group) at the end


# -- processes ------------------------------------------------------------------------------


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def client_command(contender, *options):
    """The load client's command line against ``contender`` (bench/sse_client.py)."""
    return [
        sys.executable,
        "-m",
        "bench.sse_client",
        "--port",
        str(contender.port),
        "--path",
        contender.stream_path,
        "--cookie",
        contender.cookie,
        *options,
    ]


def spawn(command, *, env=None, log=None, pipes=False):
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
        stdout=subprocess.PIPE if pipes else (log or subprocess.DEVNULL),
        stderr=log or subprocess.DEVNULL,
        text=pipes,
        start_new_session=True,
    )
    PROCESSES.append(proc)
    return proc


def kill(proc, timeout=10.0):
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def kill_all():
    for proc in reversed(PROCESSES):
        kill(proc, timeout=5)


def free_port():
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Gunicorn:
    """One gunicorn master with one worker, on a free loopback port."""

    def __init__(self, name, command, env, tmp, probe):
        self.name, self.tmp, self.probe = name, Path(tmp), probe
        self.port = free_port()
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.log_path = self.tmp / f"{name}.log"
        environ = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        environ = {k: v for k, v in environ.items() if not k.startswith(("JOBS_", "BENCH_"))}
        environ.update(HOST=HOST, PORT=str(self.port), HOME=str(self.tmp), PYTHONUNBUFFERED="1")
        environ.update(env)
        with open(self.log_path, "ab") as log:
            self.proc = spawn([str(GUNICORN), *command(self.port)], env=environ, log=log)
        self._wait_ready()
        self.worker = self._worker_pid()

    def _wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()[-3000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if request(self.port, "GET", self.probe, timeout=2)[0] == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout} s:\n{self.output()[-3000:]}")

    def _worker_pid(self):
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        children = path.read_text().split()
        if len(children) != 1:
            raise RuntimeError(f"{self.name}: expected one worker, found {children}")
        return int(children[0])

    def output(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_kib(self):
        for line in Path(f"/proc/{self.worker}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None

    def fds(self):
        return len(os.listdir(f"/proc/{self.worker}/fd"))

    def cpu_s(self):
        fields = Path(f"/proc/{self.worker}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        kill(self.proc, timeout=25)


def request(port, method, path, *, body=None, headers=None, timeout=10):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def loadavg():
    return Path("/proc/loadavg").read_text().split()[:3]


# -- the two contenders ------------------------------------------------------------------------


class Contender:
    """What the phases need from a server: start streams, post a control, read stats."""

    name = ""
    stream_path = ""
    ready_marker = ""
    cookie = ""

    def __init__(self, server):
        self.server = server
        self.port = server.port
        self.conn = None

    def _conn(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        return self.conn

    def post(self, path, body, headers):
        for attempt in (1, 2):  # a kept connection the server closed: reconnect once
            try:
                conn = self._conn()
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if response.status >= 300:
                    raise RuntimeError(f"{self.name}: POST {path}: {response.status} {data[:300]}")
                return data
            except (http.client.HTTPException, ConnectionError):
                self.conn = None
                if attempt == 2:
                    raise
        return None

    def stats(self):
        status, body = request(self.port, "GET", self.stats_path, headers=self.headers())
        if status != 200:
            raise RuntimeError(f"{self.name}: stats {status}")
        return json.loads(body)

    def headers(self):
        return {"Cookie": self.cookie} if self.cookie else {}


class Ours(Contender):
    name = "ours"
    stream_path = "/api/jobs/sse"
    ready_marker = "event: snapshot"
    stats_path = "/bench/stats"

    def __init__(self, server):
        super().__init__(server)
        sys.path.insert(0, str(ROOT))
        from tests.server_support import Session, read_password

        session = Session(f"http://{HOST}:{self.port}")
        session.login("admin", read_password(server.tmp / "instance"))
        self.cookie = session.cookie_header()
        self.csrf = session.csrf
        self.paused = {}

    def toggle(self, job=TARGET):
        paused = not self.paused.get(job, False)
        action = "pause" if paused else "resume"
        self.post(
            f"/api/jobs/{job}/{action}",
            b"{}",
            {
                "Cookie": self.cookie,
                "X-CSRFToken": self.csrf,
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        self.paused[job] = paused

    def jobs(self):
        status, body = request(self.port, "GET", "/api/jobs", headers=self.headers())
        assert status == 200, status
        return json.loads(body)

    def resume_all(self):
        for job, paused in list(self.paused.items()):
            if paused:
                self.toggle(job)


class Reference(Contender):
    name = "reference"
    stream_path = "/sse"
    ready_marker = "retry:"
    stats_path = "/stats"

    def __init__(self, server, job):
        super().__init__(server)
        self.job = dict(job)
        self.paused = {}
        self._ticking = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def toggle(self, job=TARGET):
        paused = not self.paused.get(job, False)
        body = dict(self.job, name=job, paused=paused, status="paused" if paused else "idle")
        self.post("/broadcast", json.dumps(body, separators=(",", ":")).encode(), {})
        self.paused[job] = paused

    def _tick(self):
        """Two broadcasts a second, as our 1 s job's started and finished events."""
        conn = None
        body = json.dumps(dict(self.job, name="bench_1s"), separators=(",", ":")).encode()
        for _ in range(36_000):  # bounded: at most an hour
            if self._ticking.wait(0.5):
                return
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = conn or http.client.HTTPConnection(HOST, self.port, timeout=10)
                conn.request("POST", "/broadcast", body=body)
                conn.getresponse().read()
                continue
            conn = None

    def stop_ticking(self):
        self._ticking.set()
        self._ticker.join(timeout=5)

    def resume_all(self):
        pass


# -- load clients --------------------------------------------------------------------------


class Clients:
    """K streams over ceil(K / 2500) ``bench.sse_client`` processes."""

    def __init__(self, contender, count, *, deadline, in_flight=200):
        self.count = count
        self.lines = queue.Queue()
        self.procs = []
        processes = max(1, -(-count // STREAMS_PER_CLIENT))
        shares = [
            count // processes + (1 if i < count % processes else 0) for i in range(processes)
        ]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for share in shares:
            proc = spawn(
                client_command(
                    contender,
                    "--count",
                    str(share),
                    "--ready",
                    contender.ready_marker,
                    "--in-flight",
                    str(in_flight),
                    "--deadline",
                    str(deadline),
                ),
                env=env,
                pipes=True,
            )
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc):
        for line in proc.stdout:
            self.lines.put((proc.pid, json.loads(line)))
        self.lines.put((proc.pid, None))

    def collect(self, key, timeout, match=None):
        """One line holding ``key`` (and ``match``) from every process."""
        found = {}
        deadline = time.monotonic() + timeout
        while len(found) < len(self.procs):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{key}: {len(found)} of {len(self.procs)} clients answered")
            try:
                pid, document = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if document is None:
                raise RuntimeError(f"a load client ended early (pid {pid})")
            if key in document and (match is None or document[key] == match):
                found[pid] = document
        return list(found.values())

    def command(self, text):
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.stdin.write(text + "\n")
                proc.stdin.flush()

    def close(self):
        status = []
        with contextlib.suppress(TimeoutError, RuntimeError):
            self.command("status")
            status = [d["status"] for d in self.collect("status", 20)]
        self.command("close")
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                kill(proc)
        return status


def wait_settled(contender, baseline, timeout=60.0):
    """Seconds until the subscriber count is back to ``baseline`` (None if never)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if contender.stats()["subscribers"] <= baseline:
            return time.monotonic() - started
        time.sleep(0.25)
    return None


# -- phases ------------------------------------------------------------------------------------


def run_rounds(contender, clients, rounds, gap=(0.2, 0.5)):
    """``rounds`` controls; per round the time until the last stream had it, and every
    stream's delivery time."""
    rng = random.Random(11)
    last, every = [], []
    for n in range(1, rounds + 1):
        time.sleep(rng.uniform(*gap))
        before = time.monotonic()
        contender.toggle()
        reports = clients.collect("round", 30, match=n)
        arrivals = [a for r in reports for a in r["arrivals"]]
        delays = [a - before for a in arrivals]
        last.append(max(delays))
        every.extend(delays)
    return last, every


def fanout(contender, count, rounds, deadline):
    server = contender.server
    base_subs = contender.stats()["subscribers"]
    rss0, fds0 = server.rss_kib(), server.fds()
    gc0 = contender.stats()["gc"]
    cpu0 = server.cpu_s()
    wall0 = time.time()
    clients = Clients(contender, count, deadline=deadline)
    result = {"contender": contender.name, "streams": count, "loadavg_before": loadavg()}
    try:
        ready = clients.collect("ready", min(deadline, 60 + count / 20))
        result["connect_s"] = max(r["finished"] for r in ready) - min(r["started"] for r in ready)
        result["ready"] = sum(r["ready"] for r in ready)
        result["connect_failures"] = sum(r["failed"] for r in ready)
        result["failure_examples"] = [f for r in ready for f in r["failures"]][:5]
        # A measurement pause, not a wait for a condition: the worker's RSS keeps
        # growing for a moment after the last stream is up (its first sends).
        time.sleep(2.0)
        rss1, fds1 = server.rss_kib(), server.fds()
        result["subscribers"] = contender.stats()["subscribers"] - base_subs
        result["rss_before_kib"], result["rss_after_kib"] = rss0, rss1
        result["kib_per_stream"] = (rss1 - rss0) / count
        result["fds_before"], result["fds_after"] = fds0, fds1
        cpu1 = server.cpu_s()
        last, every = run_rounds(contender, clients, rounds)
        result["rounds"] = rounds
        result["all_streams_ms"] = common.summarize(last)
        result["each_stream_ms"] = common.summarize(every)
        result["server_cpu_connect_s"] = cpu1 - cpu0
        result["server_cpu_rounds_s"] = server.cpu_s() - cpu1
    finally:
        status = clients.close()
    result["client_status"] = status
    result["every_change_seen"] = bool(status) and all(
        s["min_changes"] == rounds == s["max_changes"] and s["order_errors"] == 0 and s["live"]
        for s in status
    )
    result["streams_live_at_end"] = sum(s["live"] for s in status)
    gc1 = contender.stats()["gc"]
    result["gc"] = gc_delta(gc0, gc1)
    result["settle_s"] = wait_settled(contender, base_subs)
    result["window"] = [wall0, time.time()]
    result["loadavg_after"] = loadavg()
    return result


def gc_delta(before, after):
    return {
        "collections": [
            a - b for a, b in zip(after["collections"], before["collections"], strict=True)
        ],
        "seconds": [
            round(a - b, 4) for a, b in zip(after["seconds"], before["seconds"], strict=True)
        ],
        "max_ms_so_far": round(after["max_s"] * 1000, 1),
    }


def churn(contender, cycles, deadline):
    server = contender.server
    before = {
        "subscribers": contender.stats()["subscribers"],
        "fds": server.fds(),
        "rss_kib": server.rss_kib(),
    }
    wall0 = time.time()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = spawn(
        client_command(
            contender,
            "--ready",
            contender.ready_marker,
            "--churn",
            str(cycles),
            "--in-flight",
            "50",
            "--deadline",
            str(deadline),
        ),
        env=env,
        pipes=True,
    )
    try:
        out, _ = proc.communicate(timeout=deadline + 10)
    except subprocess.TimeoutExpired:
        kill(proc)
        out = ""
    report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": "no report"}
    settle = wait_settled(contender, before["subscribers"])
    time.sleep(1.0)  # a measurement pause: closed sockets and freed memory go back a moment later
    after = {
        "subscribers": contender.stats()["subscribers"],
        "fds": server.fds(),
        "rss_kib": server.rss_kib(),
    }
    return {
        "contender": contender.name,
        "cycles": cycles,
        "client": report,
        "cycles_per_s": report.get("ready", 0) / report["seconds"]
        if report.get("seconds")
        else None,
        "before": before,
        "after": after,
        "settle_s": settle,
        "window": [wall0, time.time()],
        "loadavg_after": loadavg(),
    }


def open_stalled(contender, count, rcvbuf=2048):
    """Streams that read their response head and first event, then never read again."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(10)
        sock.connect((HOST, contender.port))
        lines = [f"GET {contender.stream_path} HTTP/1.1", f"Host: {HOST}"]
        if contender.cookie:
            lines.append(f"Cookie: {contender.cookie}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        seen = b""
        while contender.ready_marker.encode() not in seen:
            chunk = sock.recv(512)
            if not chunk:
                raise RuntimeError("stalled stream closed at start")
            seen += chunk
        socks.append(sock)
    return socks


def tcp_states(server_port, client_ports):
    """{client port: (state, send queue bytes)} of the server's side of each connection."""
    found = {}
    wanted = {f"{p:04X}": p for p in client_ports}
    local = f"0100007F:{server_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] != local:
            continue
        remote_port = fields[2].split(":")[1]
        if remote_port in wanted:
            tx = int(fields[4].split(":")[0], 16)
            found[wanted[remote_port]] = (fields[3], tx)
    return found


STATES = {
    "01": "ESTABLISHED",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "08": "CLOSE_WAIT",
}


def stall(contender, count, stalled_count, rounds, fill_s, drop_wait_s, deadline):
    server = contender.server
    base_subs = contender.stats()["subscribers"]
    rss0 = server.rss_kib()
    wall0 = time.time()
    clients = Clients(contender, count, deadline=deadline)
    result = {"contender": contender.name, "streams": count, "stalled": stalled_count}
    stalled = []
    try:
        clients.collect("ready", 120)
        stalled = open_stalled(contender, stalled_count)
        ports = [s.getsockname()[1] for s in stalled]
        result["rss_connected_kib"] = server.rss_kib()
        rss_series = []
        started = time.monotonic()
        # Fill: controls of other jobs from four threads at once (the readers get
        # these events too, uncounted), until the stalled sockets' send queues have
        # stopped growing for 3 s: then the server's writes to them block.
        stop_fill = threading.Event()
        fillers = [
            threading.Thread(target=_toggle_until, args=(contender, job, stop_fill, fill_s))
            for job in FILLER_JOBS
        ]
        for thread in fillers:
            thread.start()
        last_tx, steady_since = None, None
        try:
            while time.monotonic() - started < fill_s:
                time.sleep(0.25)
                states = tcp_states(server.port, ports)
                tx = sum(q for _, q in states.values())
                if tx == last_tx:
                    steady_since = steady_since or time.monotonic()
                    if time.monotonic() - steady_since > 3:
                        break
                else:
                    last_tx, steady_since = tx, None
                rss_series.append((round(time.monotonic() - started, 1), server.rss_kib()))
        finally:
            stop_fill.set()
            for thread in fillers:
                thread.join(timeout=30)
        result["fill_s"] = time.monotonic() - started
        result["stalled_send_queue_bytes"] = last_tx
        result["stalled_send_queue_steady"] = steady_since is not None
        result["rss_after_fill_kib"] = server.rss_kib()
        last, every = run_rounds(contender, clients, rounds)
        result["rounds"] = rounds
        result["all_streams_ms"] = common.summarize(last)
        result["each_stream_ms"] = common.summarize(every)
        # Does anything drop them?  Keep events flowing and watch their server side.
        watch_started = time.monotonic()
        dropped_at = None
        while time.monotonic() - watch_started < drop_wait_s:
            contender.toggle(FILLER_JOBS[0])
            time.sleep(0.5)
            states = tcp_states(server.port, ports)
            open_now = [p for p, (st, _) in states.items() if st == "01"]
            rss_series.append((round(time.monotonic() - started, 1), server.rss_kib()))
            if not open_now:
                dropped_at = time.monotonic() - started
                break
        states = tcp_states(server.port, ports)
        result["stalled_server_side"] = sorted(
            {STATES.get(st, st) for st, _ in states.values()} or {"gone"}
        )
        result["stalled_dropped_after_s"] = dropped_at
        result["watched_s"] = time.monotonic() - started
        result["stalled_subscribers"] = contender.stats()["subscribers"] - base_subs - count
        result["rss_before_kib"] = rss0
        result["rss_end_kib"] = server.rss_kib()
        result["rss_series_kib"] = rss_series[:: max(1, len(rss_series) // 20)]
    finally:
        for sock in stalled:
            sock.close()
        status = clients.close()
        contender.resume_all()
    result["every_change_seen"] = bool(status) and all(
        s["min_changes"] == rounds == s["max_changes"] and s["order_errors"] == 0 for s in status
    )
    result["settle_s"] = wait_settled(contender, base_subs)
    result["window"] = [wall0, time.time()]
    result["loadavg_after"] = loadavg()
    return result


def _toggle_until(contender, job, stop, seconds):
    """Pause and resume ``job`` back to back on a connection of its own."""
    own = type(contender).__new__(type(contender))
    own.__dict__.update(contender.__dict__)
    own.conn = None
    own.paused = {}
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        own.toggle(job)
    if own.paused.get(job):
        own.toggle(job)


def wrk(port, path, cookie, seconds, connections=32):
    exe = shutil.which("wrk")
    if exe is None:
        return {"error": "wrk is not installed (apt-get install -y wrk)"}
    command = [exe, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    url = f"http://{HOST}:{port}{path}"
    subprocess.run([*command[:3], "-d1s", url], capture_output=True, timeout=30)  # warm-up
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 30)
    return parse_wrk(done.stdout) | {"connections": connections, "seconds": seconds}


def parse_wrk(text):
    result = {"raw": text}
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    for line in text.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(parts[1])
        elif len(parts) == 2 and parts[0] in ("50%", "90%", "99%"):
            value = parts[1]
            for unit in ("us", "ms", "s"):
                if value.endswith(unit):
                    result[f"p{parts[0][:-1]}_ms"] = float(value[: -len(unit)]) * units[unit]
                    break
        elif "Non-2xx" in line:
            result["non_2xx"] = int(parts[-1])
        elif line.strip().startswith("Socket errors"):
            result["socket_errors"] = line.strip()
    return result


def lateness(samples, window):
    values = [late for slot, late in samples if window[0] <= slot <= window[1]]
    return common.summarize(values)


# -- the run -------------------------------------------------------------------------------


def start_ours(tmp, name, extra_env=None):
    env = {
        "JOBS_INSTANCE_PATH": str(Path(tmp) / "instance"),
        "JOBS_DEMO": "1",
        **(extra_env or {}),
    }
    return Gunicorn(
        name,
        lambda port: ["-c", "gunicorn.conf.py", "bench.sse_app:app"],
        env,
        tmp,
        "/login",
    )


def start_reference(tmp, jobs_file):
    # An empty config file: otherwise gunicorn reads ./gunicorn.conf.py, which is ours.
    config = Path(tmp) / "reference.conf.py"
    config.write_text("")

    def command(port):
        return [
            "-c",
            str(config),
            "-k",
            "gevent",
            "-w",
            "1",
            "--worker-connections",
            "10000",
            "--keep-alive",
            "5",
            "--access-logfile",
            "-",
            "--no-control-socket",
            "--bind",
            f"{HOST}:{port}",
            "bench.reference_sse:app",
        ]

    return Gunicorn("reference", command, {"BENCH_REFERENCE_JOBS": str(jobs_file)}, tmp, "/stats")


def measure(args):
    sizes = [100, 1000] if args.quick else args.streams
    rounds = 8 if args.quick else args.rounds
    cycles = 2000 if args.quick else args.churn
    wrk_s = 3 if args.quick else 10
    results = {
        "nofile": raise_nofile(),
        "loadavg_start": loadavg(),
        "gc_mode": args.gc or "default",
        "fanout": [],
        "churn": [],
        "stall": [],
        "api": [],
    }
    extra = {"BENCH_GC": args.gc} if args.gc else {}
    if args.send_timeout:
        extra["BENCH_SSE_SEND_TIMEOUT"] = str(args.send_timeout)
    phases = set(args.phases.split(","))
    results["phases"] = sorted(phases)
    results["send_timeout_s"] = args.send_timeout or None
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
        # 1. GET /api/jobs with 100 jobs, ours then the reference serving the same list.
        big = start_ours(Path(tmp) / "ours-100", "ours-100", {"BENCH_TOTAL_JOBS": "100", **extra})
        try:
            ours_big = Ours(big)
            jobs = ours_big.jobs()["jobs"]
            jobs_file = Path(tmp) / "jobs.json"
            jobs_file.write_text(json.dumps(jobs))
            for connections in WRK_CONNECTIONS if "api" in phases else ():
                log(f"GET /api/jobs ({len(jobs)} jobs), ours, {connections} connections")
                results["api"].append(
                    {"contender": "ours", "jobs": len(jobs)}
                    | wrk(big.port, "/api/jobs", ours_big.cookie, wrk_s, connections)
                )
        finally:
            big.stop()
        ours_server = start_ours(Path(tmp) / "ours", "ours", extra)
        ref_server = start_reference(tmp, jobs_file)
        reference = None
        try:
            for connections in WRK_CONNECTIONS if "api" in phases else ():
                log(f"GET /api/jobs, reference, {connections} connections")
                results["api"].append(
                    {"contender": "reference", "jobs": len(jobs)}
                    | wrk(ref_server.port, "/api/jobs", "", wrk_s, connections)
                )
            ours = Ours(ours_server)
            target_job = next(j for j in ours.jobs()["jobs"] if j["name"] == TARGET)
            reference = Reference(ref_server, target_job)
            results["job_count"] = len(ours.jobs()["jobs"])
            contenders = [ours, reference]
            # 2. fan-out
            for count in sizes if "fanout" in phases else ():
                for contender in contenders:
                    log(f"fan-out {count}: {contender.name}")
                    results["fanout"].append(fanout(contender, count, rounds, args.deadline))
            # 3. churn
            for contender in contenders if "churn" in phases else ():
                log(f"churn {cycles}: {contender.name}")
                results["churn"].append(churn(contender, cycles, args.deadline))
            # 4. a client that stops reading
            stall_streams = 1000
            for contender in contenders if "stall" in phases else ():
                log(f"stall: {contender.name}")
                results["stall"].append(
                    stall(
                        contender,
                        stall_streams,
                        10,
                        rounds,
                        fill_s=30 if args.quick else 90,
                        drop_wait_s=10 if args.quick else args.drop_wait,
                        deadline=args.deadline,
                    )
                )
            samples = ours.stats()["lateness"]
            results["lateness_all_ms"] = common.summarize([late for _, late in samples])
            for phase in ("fanout", "churn", "stall"):
                for item in results[phase]:
                    if item["contender"] == "ours":
                        item["lateness_1s_job_ms"] = lateness(samples, item["window"])
            results["gc_ours"] = ours.stats()["gc"]
            results["gc_reference"] = reference.stats()["gc"]
        finally:
            if reference is not None:
                reference.stop_ticking()
            for server in (ours_server, ref_server):
                server.stop()
            results["server_log_tail"] = {
                "ours": tail_errors(ours_server.output()),
                "reference": tail_errors(ref_server.output()),
            }
    results["loadavg_end"] = loadavg()
    return results


def tail_errors(text, count=10):
    lines = [
        line
        for line in text.splitlines()
        if any(w in line for w in ("Error", "error", "WARNING", "CRITICAL", "Traceback"))
    ]
    return lines[-count:]


def log(text):
    print(f"# {text} (load average {' '.join(loadavg())})", file=sys.stderr, flush=True)


# -- report ----------------------------------------------------------------------------------


def render(results):
    lines = [
        f"\n### Server under load (one gevent worker each; gc: {results['gc_mode']}; "
        f"load average at start {' '.join(results['loadavg_start'])}, "
        f"at end {' '.join(results['loadavg_end'])})\n"
    ]
    rows = []
    for r in results["fanout"]:
        if "all_streams_ms" not in r:
            rows.append([r["contender"], r["streams"], "failed", *[""] * 9])
            continue
        a, e = r["all_streams_ms"], r["each_stream_ms"]
        late = r.get("lateness_1s_job_ms", {})
        rows.append(
            [
                r["contender"],
                r["streams"],
                f"{r['ready']}/{r['streams']}",
                f"{r['connect_s']:.2f}",
                common.fmt_ms(a["p50"]),
                common.fmt_ms(a["p99"]),
                common.fmt_ms(a["max"]),
                common.fmt_ms(e["p99"]),
                f"{r['kib_per_stream']:.1f}",
                "yes" if r["every_change_seen"] else "NO",
                f"{sum(r['gc']['collections'])} / {sum(r['gc']['seconds']) * 1000:.0f}",
                common.fmt_ms(late.get("p99")) if late else "-",
            ]
        )
    lines.append(
        common.markdown_table(
            [
                "server",
                "streams",
                "connected",
                "connect all s",
                "to all p50 ms",
                "to all p99 ms",
                "to all max ms",
                "each stream p99 ms",
                "KiB/stream",
                "every change",
                "gc runs / ms",
                "1 s job late p99 ms",
            ],
            rows,
        )
    )
    lines.append(
        f"\n{results['fanout'][0].get('rounds', '?') if results['fanout'] else 0}"
        ' rounds per size; "to all" = from the '
        'control to its event at the last stream, per round; "each stream" = every '
        "(stream, round) delivery."
    )
    rows = []
    for r in results["churn"]:
        b, a = r["before"], r["after"]
        late = r.get("lateness_1s_job_ms", {})
        rows.append(
            [
                r["contender"],
                f"{r['client'].get('ready', 0)}/{r['cycles']}",
                f"{r['cycles_per_s']:.0f}" if r.get("cycles_per_s") else "n/a",
                f"{b['subscribers']} → {a['subscribers']}",
                f"{b['fds']} → {a['fds']}",
                f"{b['rss_kib'] / 1024:.1f} → {a['rss_kib'] / 1024:.1f}",
                "n/a" if r["settle_s"] is None else f"{r['settle_s']:.1f}",
                common.fmt_ms(late.get("p99")) if late else "-",
            ]
        )
    lines.append("\n### Churn: connect, first event, close\n")
    lines.append(
        common.markdown_table(
            [
                "server",
                "cycles",
                "cycles/s",
                "subscribers",
                "worker fds",
                "worker RSS MiB",
                "settled after s",
                "1 s job late p99 ms",
            ],
            rows,
        )
    )
    rows = []
    for r in results["stall"]:
        if "all_streams_ms" not in r:
            rows.append([r["contender"], "failed", *[""] * 7])
            continue
        a = r["all_streams_ms"]
        late = r.get("lateness_1s_job_ms", {})
        dropped = r["stalled_dropped_after_s"]
        rows.append(
            [
                r["contender"],
                f"{r['streams']} + {r['stalled']}",
                f"{r['stalled_send_queue_bytes'] or 0:,}",
                common.fmt_ms(a["p50"]),
                common.fmt_ms(a["p99"]),
                f"{r['rss_before_kib'] / 1024:.1f} → {r['rss_end_kib'] / 1024:.1f}",
                "never" if dropped is None else f"{dropped:.0f}",
                ", ".join(r["stalled_server_side"]) + f" after {r['watched_s']:.0f} s",
                common.fmt_ms(late.get("p99")) if late else "-",
            ]
        )
    lines.append("\n### Clients that stop reading (10 stalled among 1,000 readers)\n")
    lines.append(
        common.markdown_table(
            [
                "server",
                "streams",
                "stalled send queues B",
                "readers to all p50 ms",
                "readers to all p99 ms",
                "worker RSS MiB",
                "stalled dropped after s",
                "stalled server side",
                "1 s job late p99 ms",
            ],
            rows,
        )
    )
    rows = []
    for r in results["api"]:
        rows.append(
            [
                r["contender"],
                r.get("jobs", ""),
                r.get("connections", ""),
                f"{r['rps']:.0f}" if "rps" in r else r.get("error", "n/a"),
                common.fmt_ms(r.get("p50_ms")),
                common.fmt_ms(r.get("p99_ms")),
                r.get("non_2xx", 0),
            ]
        )
    lines.append("\n### GET /api/jobs (wrk, 1 thread, closed loop)\n")
    lines.append(
        common.markdown_table(
            ["server", "jobs", "connections", "requests/s", "p50 ms", "p99 ms", "non-2xx"], rows
        )
    )
    late = results.get("lateness_all_ms", {})
    lines.append(
        f"\n1 s job lateness over the whole run: n={late.get('n')}, "
        f"p50 {common.fmt_ms(late.get('p50'))} ms, p99 {common.fmt_ms(late.get('p99'))} ms, "
        f"max {common.fmt_ms(late.get('max'))} ms."
    )
    lines.append("\n### Targets\n")
    lines.extend(targets(results))
    return "\n".join(lines)


def targets(results):
    by = {(r["contender"], r["streams"]): r for r in results["fanout"] if "all_streams_ms" in r}
    out = []
    ours, ref = by.get(("ours", 1000)), by.get(("reference", 1000))
    if ours and ref:
        ratio = common.ratio(ours["all_streams_ms"]["p99"], ref["all_streams_ms"]["p99"])
        verdict = "meets" if ratio is not None and ratio <= 1.5 else "MISSES"
        out.append(
            "- 1,000 streams, p99 to all within 1.5x the reference: "
            f"{common.fmt_ratio(ratio)}, {verdict}"
        )
        ratio = common.ratio(ours["kib_per_stream"], ref["kib_per_stream"])
        verdict = "meets" if ratio is not None and ratio <= 1.5 else "MISSES"
        out.append(
            f"- 1,000 streams, memory per stream within 1.5x: {common.fmt_ratio(ratio)}, {verdict}"
        )
    big = by.get(("ours", 5000))
    if big:
        held = big["ready"] == 5000 and big["streams_live_at_end"] == 5000
        out.append(f"- 5,000 streams held: {'meets' if held else 'MISSES'}")
    seen = all(r.get("every_change_seen") for r in results["fanout"] if r["contender"] == "ours")
    out.append(f"- every stream received every change: {'meets' if seen else 'MISSES'}")
    return out


def profile_run(args):
    """Ours only: K streams, cProfile in the worker around the rounds."""
    count = args.streams[-1] if args.streams != [100, 1000, 5000] else 1000
    raise_nofile()
    path = common.RESULTS / f"profile-sse-{count}.pstats"
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
        server = start_ours(Path(tmp) / "ours", "ours", {"BENCH_GC": args.gc} if args.gc else {})
        try:
            ours = Ours(server)
            clients = Clients(ours, count, deadline=args.deadline)
            try:
                clients.collect("ready", 120)
                request(server.port, "GET", "/bench/profile?do=start")
                last, _ = run_rounds(ours, clients, args.rounds)
                request(server.port, "GET", f"/bench/profile?do=stop&path={path}")
            finally:
                clients.close()
        finally:
            server.stop()
    import io
    import pstats

    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.sort_stats("tottime").print_stats(25)
    print(buffer.getvalue())
    print(f"to all streams, per round: {common.summarize(last)}")
    print(f"Profile: {path}")


def main(argv=None):
    parser = common.worker_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--streams", type=int, nargs="+", default=[100, 1000, 5000], help="fan-out sizes"
    )
    parser.add_argument("--rounds", type=int, default=20, help="controls per size (20)")
    parser.add_argument("--churn", type=int, default=10_000, help="connect-and-drop cycles")
    parser.add_argument(
        "--drop-wait", type=float, default=45.0, help="seconds to watch stalled streams (45)"
    )
    parser.add_argument("--deadline", type=float, default=300.0, help="longest phase, seconds")
    parser.add_argument(
        "--gc", default="", help="ours: 'freeze' or 'T0,T1,T2' thresholds (a what-if)"
    )
    parser.add_argument("--no-wait", action="store_true", help="accepted for the suite runner")
    parser.add_argument(
        "--phases", default="api,fanout,churn,stall", help="comma-separated subset to run"
    )
    parser.add_argument(
        "--send-timeout",
        type=float,
        default=0.0,
        help="ours: a what-if socket timeout for streams (BENCH_SSE_SEND_TIMEOUT)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="ours only: profile the worker during the rounds at 1,000 streams (or --streams K)",
    )
    args = parser.parse_args(argv)
    if args.profile:
        try:
            profile_run(args)
        finally:
            kill_all()
        return
    try:
        results = measure(args)
    finally:
        kill_all()
    report = render(results)
    print(report)
    suffix = f"-gc-{args.gc.replace(',', '-')}" if args.gc else ""
    suffix += f"-send-timeout-{args.send_timeout:g}" if args.send_timeout else ""
    if args.phases != "api,fanout,churn,stall":
        suffix += "-" + args.phases.replace(",", "-")
    path = common.write_results(NAME + suffix, results | {"report": report})
    print(f"\nResults: {path}")


if __name__ == "__main__":
    main()
