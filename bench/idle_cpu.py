"""CPU used while idle: 1,000 jobs every hour, none due during the window, each
scheduler alone in its own process.  Process CPU time (user + system, from
``getrusage``) over the window, divided by its length: milliseconds of CPU per
second.  For every thread, its own CPU clock says where the time went.

- ours: the Engine with its SQLite file, run writer, lease keeper, sync thread and
  a subscriber waiting for events.
- apscheduler: BackgroundScheduler with 1,000 ``IntervalTrigger(hours=1)`` jobs.
- schedule: the textbook ``run_pending()`` + ``sleep(1)`` loop.
- bare: a thread with a heap of (due, job) sleeping until the next due time.

First slots are spread over the hour from one minute after the window ends, so no
job runs while CPU is measured.

    .venv/bin/python -m bench.idle_cpu                  # 20 s each, ~2 minutes
    .venv/bin/python -m bench.idle_cpu --duration 60    # steadier figures
"""

import heapq
import os
import random
import resource
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

NAME = "idle_cpu"
CONTENDERS = ("ours", "apscheduler", "schedule", "bare")
JOBS = 1000
HOUR = 3600
SETTLE = 3.0  # seconds after start before measuring


def _noop(ctx=None):
    """A job that never runs during the benchmark."""


def first_slots(window_end):
    rng = random.Random(1)
    start = window_end + 60
    return [start + rng.random() * (HOUR - 60) for _ in range(JOBS)]


def run_ours(slots, lease_ttl=None, sync_interval=None):
    names = [f"job-{i:04d}" for i in range(JOBS)]
    specs = [(name, _noop, HOUR) for name in names]
    tmp = tempfile.TemporaryDirectory(prefix="bench-jobs-")
    options = {"lease_ttl": lease_ttl} if lease_ttl else {}
    engine, store = common.make_engine(
        tmp.name, specs, first_slots=dict(zip(names, slots, strict=True)), **options
    )
    engine.start()
    if sync_interval:  # where the file cannot be watched, the feed polls this often
        engine.keeper.feed.poll_interval = sync_interval
    # As the server's worker does once started (gunicorn.conf.py).
    from scheduler.tuning import tune_after_start

    tune_after_start()
    drain = common.EventDrain(engine)
    common.wait_leader(engine)
    yield
    drain.stop()
    common.stop_engine(engine, store)
    tmp.cleanup()
    yield {"events": drain.events}


def run_apscheduler(slots):
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    scheduler = BackgroundScheduler(timezone=UTC)
    for i, slot in enumerate(slots):
        start = datetime.fromtimestamp(slot, UTC)
        scheduler.add_job(
            _noop, IntervalTrigger(seconds=HOUR, start_date=start, timezone=UTC), id=f"job-{i}"
        )
    scheduler.start()
    yield
    scheduler.shutdown(wait=True)
    yield {}


def run_schedule(slots):
    import schedule

    scheduler = schedule.Scheduler()
    for slot in slots:
        job = scheduler.every(1).hours.do(_noop)
        job.next_run = datetime.fromtimestamp(slot)
    stop = threading.Event()

    def textbook_loop():
        while not stop.is_set():
            scheduler.run_pending()
            time.sleep(1)  # the textbook loop is the peer being measured, sleep and all

    thread = threading.Thread(target=textbook_loop, name="schedule-loop", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(3.0)
    yield {}


def run_bare(slots):
    stop = threading.Event()

    def loop():
        heap = [(slot, i) for i, slot in enumerate(slots)]
        heapq.heapify(heap)
        while not stop.is_set():
            due, i = heap[0]
            delay = due - time.time()
            if delay > 0:
                stop.wait(delay)  # a stop wakes it; nothing else does
                continue
            heapq.heapreplace(heap, (due + HOUR, i))
            _noop()

    thread = threading.Thread(target=loop, name="bare-loop", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(2.0)
    yield {}


def _rusage():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw + usage.ru_nivcsw


def worker(contender, duration, lease_ttl, sync_interval, out):
    settle = SETTLE
    if contender == "ours" and (lease_ttl or sync_interval):
        # Past the first renewal and the first look at other processes.
        settle = max(SETTLE, lease_ttl / 2 + 1, sync_interval + 1)
    window_end = time.time() + settle + duration + 5
    slots = first_slots(window_end)
    runners = {
        "ours": run_ours,
        "apscheduler": run_apscheduler,
        "schedule": run_schedule,
        "bare": run_bare,
    }
    if contender not in runners:
        raise SystemExit(f"Unknown contender {contender!r}; use one of {', '.join(CONTENDERS)}.")
    options = {}
    if contender == "ours":
        options = {"lease_ttl": lease_ttl, "sync_interval": sync_interval}
    steps = runners[contender](slots, **options)
    next(steps)
    time.sleep(settle)
    # Instrumentation stays outside the span measured by getrusage.
    others = common.OtherLoad()
    threads0 = common.thread_cpu()
    wall0 = time.monotonic()
    cpu0, switches0 = _rusage()
    time.sleep(duration)
    cpu1, switches1 = _rusage()
    wall = time.monotonic() - wall0
    threads1 = common.thread_cpu()
    other_cores = others.cores()
    extra = next(steps)
    per_thread = {
        role: (seconds - threads0.get(role, 0.0)) * 1000.0 / wall
        for role, seconds in threads1.items()
    }
    common.save_worker_result(
        out,
        {
            "contender": contender,
            "jobs": JOBS,
            "duration_s": wall,
            "cpu_ms_per_s": (cpu1 - cpu0) * 1000.0 / wall,
            "context_switches_per_s": (switches1 - switches0) / wall,
            "threads_ms_per_s": {k: v for k, v in sorted(per_thread.items()) if v > 0.0005},
            "other_load_cores": other_cores,
            **extra,
        },
    )


def main(argv=None):
    parser = common.worker_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of idle measured per scheduler (20)"
    )
    parser.add_argument(
        "--only", choices=CONTENDERS, action="append", help="only these (repeatable)"
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait for other processes to go quiet before each run",
    )
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=0.0,
        help="what-if: run ours with this lease_ttl (seconds; the holder renews every ttl/2)",
    )
    parser.add_argument(
        "--sync-interval",
        type=float,
        default=0.0,
        help="what-if: run ours with this sync_interval (seconds between looks at what "
        "other processes changed)",
    )
    common.add_baseline_option(parser)
    args = parser.parse_args(argv)
    if args.worker is not None:
        contender, duration, lease_ttl, sync_interval = args.worker
        worker(contender, float(duration), float(lease_ttl), float(sync_interval), args.out)
        return
    duration = 5.0 if args.quick else args.duration
    baseline = common.open_baseline(args.baseline, NAME)
    results = []
    for contender in args.only or CONTENDERS:
        label = contender
        if contender == "ours" and (args.lease_ttl or args.sync_interval):
            label = (
                f"ours (lease_ttl {args.lease_ttl or 'default'}, "
                f"sync_interval {args.sync_interval or 'default'})"
            )
        results += common.run_contender(
            f"bench.{NAME}",
            contender,
            [duration, args.lease_ttl, args.sync_interval],
            timeout=duration + 120,
            what=f"idle ({duration:g} s)",
            no_wait=args.no_wait,
            baseline=baseline,
            label=label,
        )
    report = render(results)
    print(report)
    path = common.write_results(
        NAME,
        {"jobs": JOBS, "interval_s": HOUR, "results": results, "report": report},
        baseline=baseline,
    )
    print(f"\nResults: {path}")


def render(results):
    ours = next(
        (
            r
            for r in results
            if r["contender"].startswith("ours") and "baseline_of" not in r and "error" not in r
        ),
        None,
    )
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["contender"], r["error"], "", "", "", ""])
            continue
        reference = common.reference_row(r, results, ours) or {}
        threads = ", ".join(
            f"{k} {v:.3f}"
            for k, v in sorted(r["threads_ms_per_s"].items(), key=lambda kv: -kv[1])
            if k != "main"  # the benchmark itself, asleep; its clock reads are not idle cost
        )
        rows.append(
            [
                r["contender"],
                f"{r['cpu_ms_per_s']:.3f}",
                f"{r['context_switches_per_s']:.1f}",
                common.fmt_load(r.get("other_load_cores")),
                common.fmt_ratio(common.ratio(reference.get("cpu_ms_per_s"), r["cpu_ms_per_s"])),
                threads or "-",
            ]
        )
    lines = [
        f"\n### CPU while idle, {JOBS} jobs every hour\n",
        common.markdown_table(
            ["scheduler", "CPU ms/s", "switches/s", "other load", "ours/this", "by thread (ms/s)"],
            rows,
        ),
    ]
    if ours is not None:
        verdict = "meets" if ours["cpu_ms_per_s"] < 0.05 else "MISSES"
        lines.append(
            f"\n### Targets\n\n- ours {ours['cpu_ms_per_s']:.3f} ms of CPU per second, "
            f"target < 0.05: {verdict}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
