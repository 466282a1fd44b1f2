"""Lateness of scheduled starts: job body start (``time.time()`` on its first line)
minus the slot it was meant to run at, for 1, 100 and 1,000 jobs every second,
with the jobs spread at random offsets over the interval and with all of them
due at the same instant.

Each scheduler runs alone in its own subprocess, one after the other, on the same
offsets (one random seed):

- ours: the Engine, with a real SQLite file, the run writer and a subscriber
  reading every event; slot is ``ctx.slot``.
- apscheduler: APScheduler 3 BackgroundScheduler, default executor (10 threads),
  ``IntervalTrigger(seconds=1, start_date=...)``; slot is the run time APScheduler
  hands its executor.
- schedule: the textbook ``run_pending()`` + ``sleep(1)`` loop on a thread; slot is
  the job's ``next_run`` before it ran (its slots drift, so it runs fewer times).
- bare-inline / bare-pool: a thread with a heap of (due, job) that sleeps until
  the next due time, then calls the job inline or hands it to a 32-thread
  ``concurrent.futures.ThreadPoolExecutor`` (as many workers as our engine).

    .venv/bin/python -m bench.scheduler_lateness            # full run, ~5 minutes
    .venv/bin/python -m bench.scheduler_lateness --quick    # ~2 minutes
    .venv/bin/python -m bench.scheduler_lateness --jobs 1000 --mode aligned --only ours
    .venv/bin/python -m bench.scheduler_lateness --profile --jobs 1000 --mode aligned
"""

import heapq
import os
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

NAME = "scheduler_lateness"
CONTENDERS = ("ours", "apscheduler", "schedule", "bare-inline", "bare-pool")
CASES = ((1, "spread"), (100, "spread"), (100, "aligned"), (1000, "spread"), (1000, "aligned"))
INTERVAL = 1  # seconds
LEAD = 1.5  # from setup to the first slot
TAIL = 1.5  # after the window: the textbook loop may start a slot up to ~1 s late
POOL_WORKERS = 32  # as many as the Engine's default max_workers
SEED = 20261125


def offsets_for(jobs, mode, seed=SEED):
    """Each job's offset within the interval: random (spread) or all 0.5 s (aligned)."""
    if mode == "aligned":
        return [0.5] * jobs
    rng = random.Random(seed + jobs)
    return [rng.random() * INTERVAL for _ in range(jobs)]


# -- the contenders (each runs in its own worker process) --------------------------------


def run_ours(offsets, base, until, samples, profile=False):
    profiler = None
    if profile:
        profiler = common.ThreadProfiler()
        profiler.install()

    def body(ctx):
        started = time.time()
        samples.append((ctx.slot, started))

    names = [f"job-{i:04d}" for i in range(len(offsets))]
    specs = [(name, body, INTERVAL) for name in names]
    slots = {name: base + off for name, off in zip(names, offsets, strict=True)}
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        engine, store = common.make_engine(tmp, specs, first_slots=slots)
        engine.start()
        # As the server's worker does once started (gunicorn.conf.py).
        from scheduler.tuning import tune_after_start

        tune_after_start()
        drain = common.EventDrain(engine)
        common.wait_leader(engine)
        yield  # the caller measures the window
        _sleep_until(until)
        stats = {"workers": engine.executor.worker_count, "stale_on_page": drain.stale_jobs()}
        drain.stop()
        common.stop_engine(engine, store, grace=5.0)
        # Every run recorded on disk (the writer flushes on stop)?
        from scheduler import Store

        check = Store(os.path.join(tmp, "jobs.db"))
        stats["runs_recorded"] = check.count_runs()
        # Every run finished before stop() returned; one still 'running' on disk had
        # its finish written before its start (the UPDATE found no row).
        stats["runs_left_running"] = check._read(
            "SELECT count(*) FROM runs WHERE outcome = 'running'"
        )[0][0]
        check.close()
        stats.update(
            events=drain.events, resyncs=drain.resyncs, persistence_ok=not engine.writer.failing
        )
        if profiler is not None:
            time.sleep(0.5)  # let the threads end and hand in their profiles
            path = common.RESULTS / f"profile-lateness-{len(offsets)}.pstats"
            common.RESULTS.mkdir(parents=True, exist_ok=True)
            stats["profile"] = profiler.report(str(path))
            stats["profile_path"] = str(path)
        yield stats


def run_apscheduler(offsets, base, until, samples):
    import logging

    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # misfires are counted instead
    slot_of = common.record_apscheduler_slots()

    def body():
        started = time.time()
        samples.append((slot_of.run_time.timestamp(), started))

    scheduler = BackgroundScheduler(timezone=UTC)
    for i, off in enumerate(offsets):
        start = datetime.fromtimestamp(base + off, UTC)
        scheduler.add_job(
            body, IntervalTrigger(seconds=INTERVAL, start_date=start, timezone=UTC), id=f"job-{i}"
        )
    scheduler.start()
    yield
    _sleep_until(until)
    scheduler.shutdown(wait=True)
    yield {}


def run_schedule(offsets, base, until, samples):
    import schedule

    scheduler = schedule.Scheduler()
    stop = threading.Event()

    def add(off):
        origin = base + off  # the slots the job was registered for: origin + k * interval

        def body():
            started = time.time()
            samples.append((job.next_run.timestamp(), started, origin))

        job = scheduler.every(INTERVAL).seconds.do(body)
        job.next_run = datetime.fromtimestamp(base + off)  # schedule uses naive local time
        return job

    for off in offsets:
        add(off)

    def textbook_loop():
        while not stop.is_set():
            scheduler.run_pending()
            time.sleep(1)  # the textbook loop is the peer being measured, sleep and all

    thread = threading.Thread(target=textbook_loop, name="schedule-loop", daemon=True)
    thread.start()
    yield
    _sleep_until(until)
    stop.set()
    thread.join(3.0)
    yield {}


def run_bare(offsets, base, until, samples, pool):
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(max_workers=POOL_WORKERS) if pool else None
    stop = threading.Event()

    def body(slot):
        started = time.time()
        samples.append((slot, started))

    def loop():
        heap = [(base + off, i) for i, off in enumerate(offsets)]
        heapq.heapify(heap)
        while not stop.is_set():
            due, i = heap[0]
            delay = due - time.time()
            if delay > 0:
                time.sleep(min(delay, 0.5))
                continue
            heapq.heapreplace(heap, (due + INTERVAL, i))
            if executor is None:
                body(due)
            else:
                executor.submit(body, due)

    thread = threading.Thread(target=loop, name="bare-loop", daemon=True)
    thread.start()
    yield
    _sleep_until(until)
    stop.set()
    thread.join(2.0)
    if executor is not None:
        executor.shutdown(wait=True)
    yield {}


def _sleep_until(moment):
    while True:
        left = moment - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.5))


def worker(contender, jobs, mode, duration, warmup, profile, out):
    """Run one contender for one case and write its lateness samples' summary."""
    offsets = offsets_for(jobs, mode)
    samples = []
    base = time.time() + LEAD
    if jobs >= 1000:
        base += 1.0  # registering 1,000 jobs takes a moment in some schedulers
    window = (base + warmup, base + warmup + duration)
    until = window[1] + TAIL
    if contender == "ours":
        steps = run_ours(offsets, base, until, samples, profile=profile)
    elif contender == "apscheduler":
        steps = run_apscheduler(offsets, base, until, samples)
    elif contender == "schedule":
        steps = run_schedule(offsets, base, until, samples)
    elif contender in ("bare-inline", "bare-pool"):
        steps = run_bare(offsets, base, until, samples, pool=contender == "bare-pool")
    else:
        raise SystemExit(f"Unknown contender {contender!r}; use one of {', '.join(CONTENDERS)}.")
    next(steps)  # started
    if time.time() > window[0]:
        raise SystemExit("Setup took longer than the lead time; raise LEAD.")
    _sleep_until(window[0])
    cpu0, wall0, others = time.process_time(), time.time(), common.OtherLoad()
    _sleep_until(window[1])
    cpu1, wall1, other_cores = time.process_time(), time.time(), others.cores()
    extra = next(steps)  # waits for the tail, stops and reports
    in_window = [(s[0], s[1]) for s in samples if window[0] <= s[0] < window[1]]
    lateness = [start - slot for slot, start in in_window]
    if contender == "schedule":
        # Its next_run moves to (end of the last run + interval), so lateness against
        # it hides the drift; also measure against the slots the jobs were registered
        # for: the last one at or before each start.
        grid = []
        for _, start, origin in samples:
            slot = origin + ((start - origin) // INTERVAL) * INTERVAL
            if window[0] <= slot < window[1]:
                grid.append(start - slot)
        extra["intended_slots"] = {"runs": len(grid), "lateness_ms": common.summarize(grid)}
    result = {
        "contender": contender,
        "jobs": jobs,
        "mode": mode,
        "duration_s": duration,
        "expected_runs": jobs * duration // INTERVAL,
        "runs": len(in_window),
        "early_runs": sum(1 for late in lateness if late < 0),
        "lateness_ms": common.summarize(lateness),
        "cpu_ms_per_s": (cpu1 - cpu0) * 1000.0 / (wall1 - wall0),
        "other_load_cores": other_cores,
        **extra,
    }
    common.save_worker_result(out, result)


# -- the run as a whole --------------------------------------------------------------------


def main(argv=None):
    parser = common.worker_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=6.0,
        help="seconds of slots measured per case with 100+ jobs (default 6)",
    )
    parser.add_argument(
        "--single-duration",
        type=float,
        default=15.0,
        help="seconds measured with 1 job, which has one slot a second (default 15)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of slots not counted after start (default 1)",
    )
    parser.add_argument("--jobs", type=int, choices=(1, 100, 1000), help="only this size")
    parser.add_argument("--mode", choices=("spread", "aligned"), help="only this mode")
    parser.add_argument(
        "--only", choices=CONTENDERS, action="append", help="only these schedulers (repeatable)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile our engine's threads with cProfile (ours only; "
        "its numbers are then not comparable)",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait for other processes to go quiet before each run",
    )
    common.add_baseline_option(parser)
    args = parser.parse_args(argv)

    if args.worker is not None:
        contender, jobs, mode, duration, warmup, profile = args.worker
        worker(
            contender,
            int(jobs),
            mode,
            int(float(duration)),
            float(warmup),
            profile == "1",
            args.out,
        )
        return

    duration, single = args.duration, args.single_duration
    if args.quick:
        duration, single = 3.0, 6.0
    if args.profile and args.baseline:
        raise SystemExit("--profile measures this checkout's engine only; drop --baseline.")
    baseline = common.open_baseline(args.baseline, NAME)
    contenders = args.only or (["ours"] if args.profile else list(CONTENDERS))
    cases = [c for c in CASES if (args.jobs in (None, c[0])) and (args.mode in (None, c[1]))]
    results = []
    for jobs, mode in cases:
        seconds = int(single if jobs == 1 else duration)
        for contender in contenders:
            for result in common.run_contender(
                f"bench.{NAME}",
                contender,
                [jobs, mode, seconds, args.warmup, int(args.profile)],
                timeout=seconds + 60,
                what=f"{jobs} jobs, {mode} ({seconds} s)",
                no_wait=args.no_wait,
                baseline=baseline,
            ):
                result.update(jobs=jobs, mode=mode)
                if "profile" in result:
                    print(result.pop("profile"))
                results.append(result)
    report = render(results)
    print(report)
    path = common.write_results(
        NAME if not args.profile else NAME + "-profile",
        {"interval_s": INTERVAL, "results": results, "report": report},
        baseline=baseline,
    )
    print(f"\nResults: {path}")


def render(results):
    """One markdown table per case, with ratios of ours to each peer."""
    lines = []
    cases = []
    for r in results:
        if (r["jobs"], r["mode"]) not in cases:
            cases.append((r["jobs"], r["mode"]))
    for jobs, mode in cases:
        rows = [r for r in results if (r["jobs"], r["mode"]) == (jobs, mode)]
        ours = next((r for r in rows if r["contender"] == "ours" and "error" not in r), None)
        title = "due at the same instant" if mode == "aligned" else "spread over the interval"
        if jobs == 1:
            title = "one job"
        lines.append(f"\n### Lateness, {jobs} job{'s' if jobs > 1 else ''} every 1 s, {title}\n")
        table = []
        for r in _rows_to_show(rows):
            if "error" in r:
                table.append([r["contender"], r["error"], "", "", "", "", "", "", "", ""])
                continue
            s = r["lateness_ms"]
            reference = common.reference_row(r, rows, ours)
            o = reference["lateness_ms"] if reference else {}
            table.append(
                [
                    r["label"],
                    f"{r['runs']}/{r['expected_runs']}",
                    common.fmt_ms(s["p50"]),
                    common.fmt_ms(s["p99"]),
                    common.fmt_ms(s["max"]),
                    f"{r['cpu_ms_per_s']:.1f}",
                    common.fmt_load(r.get("other_load_cores")),
                    common.fmt_ratio(common.ratio(o.get("p50"), s["p50"])),
                    common.fmt_ratio(common.ratio(o.get("p99"), s["p99"])),
                    common.fmt_ratio(common.ratio(o.get("max"), s["max"])),
                ]
            )
        lines.append(
            common.markdown_table(
                [
                    "scheduler",
                    "runs/slots",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "CPU ms/s",
                    "other load",
                    "ours/this p50",
                    "ours/this p99",
                    "ours/this max",
                ],
                table,
            )
        )
        for r in rows:
            if "error" in r or "ours" not in (r["contender"], r.get("baseline_of")):
                continue
            lines.append(
                f"\n{r['contender']}: {r.get('events', 0)} events read, "
                f"{r.get('resyncs', 0)} resyncs, {r.get('runs_recorded', 0)} runs on disk, "
                f"{r.get('workers', 0)} workers, early starts {r.get('early_runs', 0)}; "
                f"runs left 'running' on disk: {r.get('runs_left_running', 'n/a')}, jobs "
                f"shown running after they finished: {len(r.get('stale_on_page', []))}"
            )
    lines.append(_targets(results))
    return "\n".join(lines)


def _rows_to_show(rows):
    """Rows as shown: the textbook loop twice, against its own next_run and against
    the slots its jobs were registered for."""
    shown = []
    for r in rows:
        if r["contender"] == "schedule" and "intended_slots" in r:
            shown.append(dict(r, label="schedule (vs. its next_run)"))
            shown.append(dict(r, label="schedule (vs. intended slots)", **r["intended_slots"]))
        else:
            shown.append(dict(r, label=r["contender"]))
    return shown


def _targets(results):
    def find(jobs, mode):
        return next(
            (
                r
                for r in results
                if r["contender"] == "ours"
                and r["jobs"] == jobs
                and r["mode"] == mode
                and "error" not in r
            ),
            None,
        )

    checks = []
    for jobs, mode, limit in ((100, "spread", 2.0), (100, "aligned", 2.0), (1000, "aligned", 10.0)):
        r = find(jobs, mode)
        if r is None:
            continue
        p99 = r["lateness_ms"]["p99"]
        verdict = "meets" if p99 is not None and p99 < limit else "MISSES"
        checks.append(
            f"- {jobs} jobs {mode}: p99 {common.fmt_ms(p99)} ms, target < {limit:g} ms: {verdict}"
        )
    for r in results:
        if r["contender"] != "ours" or "error" in r:
            continue
        peers = [
            p
            for p in _rows_to_show(results)
            if (p["jobs"], p["mode"]) == (r["jobs"], r["mode"])
            and p["contender"] in ("apscheduler", "schedule")
            and "error" not in p
        ]
        lost = [p["label"] for p in peers if not r["lateness_ms"]["p99"] < p["lateness_ms"]["p99"]]
        verdict = "yes" if not lost else "NO (not below " + ", ".join(lost) + ")"
        checks.append(f"- {r['jobs']} jobs {r['mode']}: p99 below every peer's: {verdict}")
    return "\n### Targets\n\n" + "\n".join(checks) if checks else ""


if __name__ == "__main__":
    main()
