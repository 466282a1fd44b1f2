"""Helpers shared by the benchmarks: percentiles, tables, results files, worker
subprocesses, and an Engine built on a real SQLite file with seeded first slots.

Nothing here imports gevent, so a worker that must monkey-patch can do it before
importing this module.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# -- statistics -----------------------------------------------------------------------


def percentile(values, q):
    """The q-th percentile (0-100) of ``values`` by linear interpolation between
    closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(seconds):
    """n, p50, p90, p99, max and mean of a list of durations in seconds, in milliseconds."""
    if not seconds:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms),
        "mean": sum(ms) / len(ms),
    }


def ratio(ours, theirs):
    """ours / theirs, or None when either is missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


# -- formatting -----------------------------------------------------------------------


def fmt_ms(value):
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_ratio(value):
    if value is None:
        return "n/a"
    if value >= 10:
        return f"{value:.0f}x"
    if value < 0.1:
        return f"{value:.2g}x"
    return f"{value:.2f}x"


def markdown_table(headers, rows):
    """A GitHub-flavoured markdown table; numbers are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    numeric = [
        all(_looks_numeric(r[i]) for r in cells) and bool(cells) for i in range(len(headers))
    ]

    def line(values):
        out = []
        for value, width, num in zip(values, widths, numeric, strict=True):
            out.append(value.rjust(width) if num else value.ljust(width))
        return "| " + " | ".join(out) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if num else ("-" * (w + 2))
            for w, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def _looks_numeric(text):
    if text in ("n/a", "-", ""):
        return True
    text = text.rstrip("x%").replace("/", "").replace(" ", "")
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- results ----------------------------------------------------------------------------


def machine_info():
    """What the numbers were measured on."""
    info = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "switch_interval_s": sys.getswitchinterval(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["code"] = code_version()
    for package in ("schedule", "apscheduler", "gevent"):
        try:
            from importlib.metadata import version

            info[package] = version(package)
        except Exception:  # not installed: say so rather than fail the run
            info[package] = None
    return info


def code_version(root=ROOT):
    """The commit and a hash of scheduler/*.py in checkout ``root`` as measured (the
    tree may have edits)."""
    import hashlib

    digest = hashlib.sha1()
    for path in sorted((root / "scheduler").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    version = {"scheduler_sha1": digest.hexdigest()[:12]}
    try:
        version["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        version["scheduler_edited"] = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "scheduler"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def write_results(name, payload, baseline=None):
    """Write ``payload`` (plus the machine description, whose "code" is this checkout's
    version, and the baseline checkout's if any) to bench/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "benchmark": name,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
    }
    if baseline is not None:
        document["baseline"] = {"path": str(baseline.root), "code": baseline.code}
    document.update(payload)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


# -- worker subprocesses -------------------------------------------------------------------


class Baseline(NamedTuple):
    """Another checkout of this repository whose engine is measured next to ours."""

    root: Path
    tag: str  # "@<short sha of its HEAD>", "+edits" when its scheduler/ has changes
    code: dict  # code_version(root)


def add_baseline_option(parser):
    parser.add_argument(
        "--baseline",
        metavar="PATH",
        help="also run ours from the checkout at PATH (its own bench worker and "
        "scheduler package), right after ours in every case",
    )


def open_baseline(path, name):
    """The checkout at ``path`` (None: no baseline) as a Baseline; it must have
    bench/<name>.py and a scheduler package."""
    if path is None:
        return None
    root = Path(path).resolve()
    if not (root / "bench" / f"{name}.py").is_file() or not (root / "scheduler").is_dir():
        raise SystemExit(f"--baseline {path}: no bench/{name}.py and scheduler/ there.")
    code = code_version(root)
    tag = "@" + (code.get("commit") or root.name)
    if code.get("scheduler_edited"):
        tag += "+edits"
    return Baseline(root, tag, code)


def run_contender(module, contender, args, timeout, what, no_wait, baseline=None, label=None):
    """Run ``contender``'s worker (``--worker CONTENDER ARGS``) after waiting for a quiet
    machine; if ``baseline`` is given and the contender is one of ours, run the
    baseline checkout's worker with the same arguments right after.  Returns the
    results, each with "contender" set to its label (``label``, by default the
    contender; the baseline's is tagged, e.g. "ours@fa14c72", and names the row it
    is a baseline of in "baseline_of")."""
    label = label or contender
    runs = [(ROOT, label, {})]
    if baseline is not None and contender.startswith("ours"):
        tagged = re.sub(r"^[\w-]+", lambda m: m[0] + baseline.tag, label)
        runs.append((baseline.root, tagged, {"baseline_of": label, "code": baseline.code}))
    results = []
    for root, name, marks in runs:
        announce(f"{what}: {name}", no_wait)
        result = run_worker(module, [contender, *args], timeout, root=root)
        result.update(contender=name, **marks)
        results.append(result)
    return results


def reference_row(row, rows, ours):
    """The row a row's "ours/this" ratios put over it: ours, but for a baseline row
    the row it is a baseline of (new/old for the same case)."""
    if "baseline_of" in row:
        return next(
            (r for r in rows if r["contender"] == row["baseline_of"] and "error" not in r), None
        )
    return ours


def run_worker(module, args, timeout, root=ROOT):
    """Run ``python -m module --worker ARGS --out FILE`` in checkout ``root`` (its cwd
    and PYTHONPATH: its own bench and scheduler packages) and return the JSON it
    wrote.  The child is killed (its whole process group) if it outlives
    ``timeout``; the result then says so instead of a measurement."""
    with tempfile.TemporaryDirectory(prefix="bench-out-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", module, "--worker", *map(str, args), "--out", str(out)]
        env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            stdout, stderr = proc.communicate()
            return {"error": f"timed out after {timeout:.0f} s", "stderr": stderr[-2000:]}
        elapsed = time.monotonic() - started
        if proc.returncode != 0 or not out.exists():
            return {
                "error": f"worker exited with status {proc.returncode}",
                "stderr": stderr[-4000:],
                "stdout": stdout[-2000:],
            }
        result = json.loads(out.read_text())
        result["wall_s"] = round(elapsed, 2)
        if stderr.strip():
            result["stderr_tail"] = stderr[-1500:]
        return result


def _kill_group(proc):
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def worker_parser(description):
    """An argument parser with the flags every benchmark module shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="short windows, for a smoke run")
    return parser


def save_worker_result(path, result):
    Path(path).write_text(json.dumps(result))


# -- our engine ------------------------------------------------------------------------------


def make_engine(directory, specs, first_slots=None, **engine_kwargs):
    """An Engine over a fresh SQLite file in ``directory``.

    ``specs`` is a list of (name, func, interval_seconds).  ``first_slots`` maps job
    names to the epoch time of their first slot: it is written to job_state.next_run
    before start, and the engine keeps a persisted future next_run as the job's
    slot when it takes the lease (see Engine._take_over).
    """
    from scheduler import Engine, JobRegistry, Store

    store = Store(os.path.join(directory, "jobs.db"))
    store.migrate()
    registry = JobRegistry()
    for name, func, interval in specs:
        registry.add(
            func, name=name, category="bench", interval=interval, description="Benchmark job."
        )
    if first_slots:
        from scheduler.sqlite_records import save_job_state

        def seed(conn):
            for name, slot in first_slots.items():
                save_job_state(conn, name, next_run=slot)

        store._write(seed)
    return Engine(registry, store, **engine_kwargs), store


def wait_leader(engine, timeout=10.0):
    """Wait until the engine holds the lease and has put its jobs on the timetable."""
    deadline = time.monotonic() + timeout
    while not engine.leader:
        if time.monotonic() > deadline:
            raise RuntimeError("The engine did not take the scheduler lease in time.")
        time.sleep(0.01)


class EventDrain:
    """A subscriber on a native thread that reads every event, as a page's stream would."""

    def __init__(self, engine):
        from scheduler import RESYNC

        self._resync_marker = RESYNC
        self._engine = engine
        self.subscription = engine.subscribe()
        self.events = 0
        self.resyncs = 0
        # The latest state of each job as this subscriber sees it.
        self.latest = {job["name"]: job for job in self.subscription.snapshot["jobs"]}
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="bench-events", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop and not self.subscription.closed:
            # Blocks until an event, like a page's stream between heartbeats; close()
            # wakes it.
            events = self.subscription.get(timeout=15.0)
            if events == self._resync_marker:
                self.resyncs += 1
                # What a page does: start again from a fresh snapshot.
                snapshot = self._engine.snapshot()
                self.latest = {job["name"]: job for job in snapshot["jobs"]}
            else:
                self.events += len(events)
                for event in events:
                    if event.kind == "job":
                        self.latest[event.key] = event.data

    def stale_jobs(self, settled=0.3):
        """Jobs this subscriber still sees running although their run finished more
        than ``settled`` seconds ago: an older state was published after a newer one."""
        from datetime import datetime

        now = time.time()
        stale = []
        for job in self._engine.jobs():
            if job["status"] == "running" or not job["last_finished"]:
                continue
            finished = datetime.fromisoformat(job["last_finished"].replace("Z", "+00:00"))
            if now - finished.timestamp() < settled:
                continue
            seen = self.latest.get(job["name"], {})
            if seen.get("status") == "running" and seen.get("last_run") == job["last_run"]:
                stale.append(job["name"])
        return stale

    def stop(self):
        self._stop = True
        self.subscription.close()
        self._thread.join(2.0)


def stop_engine(engine, store, grace=2.0):
    """Stop the engine, wait for its threads to end, then close the database.

    ``Engine.stop`` does not join its threads; closing the connections while the
    lease keeper or sync thread is still inside a query is not safe."""
    engine.stop(grace=grace)
    deadline = time.monotonic() + 5.0
    while _engine_threads_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    store.close()


def _engine_threads_alive():
    roles = {"engine loop", "lease keeper", "sync", "run writer"}
    return any(_role_of(ident, frame) in roles for ident, frame in sys._current_frames().items())


# -- the rest of the machine ---------------------------------------------------------------


def cpu_busy_seconds():
    """CPU seconds spent by the whole machine (all cores, not idle or iowait) since boot."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How many cores processes other than this one kept busy over a span."""

    def __init__(self):
        self._busy = cpu_busy_seconds()
        self._own = _own_cpu()
        self._wall = time.monotonic()

    def cores(self):
        busy = cpu_busy_seconds()
        if busy is None or self._busy is None:
            return None
        wall = time.monotonic() - self._wall
        others = (busy - self._busy) - (_own_cpu() - self._own)
        return max(0.0, others / wall) if wall > 0 else None


def _own_cpu():
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def wait_for_quiet(threshold=0.2, max_wait=10.0, sample=1.0):
    """Wait (at most ``max_wait`` seconds) until other processes use under ``threshold``
    cores over ``sample`` seconds; return the last load seen.  Other people's work
    on a 2-core machine shows up directly in scheduling latency."""
    deadline = time.monotonic() + max_wait
    while True:
        probe = OtherLoad()
        time.sleep(sample)
        load = probe.cores()
        if load is None or load < threshold or time.monotonic() >= deadline:
            return load


def fmt_load(cores):
    """Other processes' load in cores for a table cell or a log line ("n/a" if unknown)."""
    return "n/a" if cores is None else f"{cores:.2f}"


def announce(label, no_wait):
    """Wait for a quiet machine (unless ``no_wait``), then say on stderr what runs next."""
    load = None if no_wait else wait_for_quiet()
    print(f"# {label}, other load before: {fmt_load(load)}", file=sys.stderr, flush=True)


def record_apscheduler_slots():
    """Make APScheduler remember, per worker thread, which slot the run it hands over is
    for; returns the thread-local whose ``run_time`` a job body reads.  The body still
    reads the clock itself, first."""
    import apscheduler.executors.pool as aps_pool

    slot_of = threading.local()
    original_run_job = aps_pool.run_job

    def run_job(job, jobstore_alias, run_times, logger_name):
        slot_of.run_time = run_times[-1]
        return original_run_job(job, jobstore_alias, run_times, logger_name)

    aps_pool.run_job = run_job
    return slot_of


# -- threads and CPU ---------------------------------------------------------------------------

_THREAD_ROLES = (
    ("_loop_forever", "engine loop"),
    ("_keep_forever", "keeper"),
    ("_work", "workers"),
    ("_process_jobs", "scheduler thread"),
    ("_main_loop", "scheduler thread"),
    ("run_pending", "schedule loop"),
)
# The engine's threads by the function they run and its file in scheduler/ (the
# engine rebuilt in roles runs its threads in methods of those modules).
_THREAD_ENTRIES = (
    ("run", "loop.py", "engine loop"),
    ("run", "keeper.py", "keeper"),
    ("_run", "writer.py", "run writer"),
    ("_run", "store.py", "run writer"),
)


def thread_cpu():
    """{role: CPU seconds so far} for every live thread of this process, by the
    thread's own CPU clock.  Roles come from the function a thread is running."""
    totals = {}
    for ident, frame in sys._current_frames().items():
        role = _role_of(ident, frame)
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(ident))
        except (OSError, AttributeError):
            continue
        totals[role] = totals.get(role, 0.0) + seconds
    return totals


def _role_of(ident, frame):
    if ident == threading.main_thread().ident:
        return "main"
    names = []
    while frame is not None:
        names.append((frame.f_code.co_name, frame.f_code.co_filename))
        frame = frame.f_back
    for function, role in _THREAD_ROLES:
        if any(name == function for name, _ in names):
            return role
    for name, filename in names:
        for function, module, role in _THREAD_ENTRIES:
            if name == function and filename.endswith(os.path.join("scheduler", module)):
                return role
    thread = threading._active.get(ident)
    if thread is not None:
        return thread.name.split("-")[0] if thread.name.startswith("Thread") else thread.name
    return "other"


class ThreadProfiler:
    """cProfile on the engine's native threads (cProfile sees only the thread that
    enabled it).  Patches the modules' ``start_thread`` so each thread profiles
    itself; stats are merged when the threads end."""

    def __init__(self):
        import cProfile

        self._cprofile = cProfile
        self._profiles = []
        self._lock = threading.Lock()

    def install(self):
        import scheduler.engine
        import scheduler.executor
        import scheduler.writer
        from scheduler import native

        original = native.start_thread

        def start_thread(target, name=None):
            def profiled():
                profile = self._cprofile.Profile()
                profile.enable()
                try:
                    target()
                finally:
                    profile.disable()
                    with self._lock:
                        self._profiles.append((name, profile))

            return original(profiled, name=name)

        for module in (scheduler.engine, scheduler.executor, scheduler.writer):
            module.start_thread = start_thread

    def report(self, path, limit=30):
        """Write merged stats to ``path`` (.pstats) and return the text of the top lines."""
        import io
        import pstats

        with self._lock:
            profiles = list(self._profiles)
        if not profiles:
            return "(no thread finished while profiled)"
        buffer = io.StringIO()
        stats = pstats.Stats(profiles[0][1], stream=buffer)
        for _, profile in profiles[1:]:
            stats.add(profile)
        stats.dump_stats(path)
        stats.sort_stats("tottime").print_stats(limit)
        stats.sort_stats("cumulative").print_stats(limit)
        return buffer.getvalue()
