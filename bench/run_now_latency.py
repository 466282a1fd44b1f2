"""Run-now latency: from the call that asks for an immediate run to the job body
starting (``time.time()`` on its first line), each scheduler in its own process
with 100 other jobs every hour registered.

- ours: ``engine.run_now(name)`` (SQLite file, run writer, a subscriber reading events).
- apscheduler-modify: ``job.modify(next_run_time=now)`` on an existing hourly job.
- apscheduler-add: ``scheduler.add_job(func, next_run_time=now)`` (a one-off job).
- bare-pool: ``ThreadPoolExecutor.submit(func)`` on a warm pool: the floor for a
  hand-off to another thread.

Between calls the benchmark waits for the run to finish, then a random 5-20 ms (a
person clicking does not click again within microseconds), so each call finds the
scheduler idle, as it would in use.

    .venv/bin/python -m bench.run_now_latency            # 400 calls each, ~30 s
    .venv/bin/python -m bench.run_now_latency --quick    # 100 calls each
"""

import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from queue import SimpleQueue

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

NAME = "run_now_latency"
CONTENDERS = ("ours", "apscheduler-modify", "apscheduler-add", "bare-pool")
OTHER_JOBS = 100
HOUR = 3600


def _noop(ctx=None):
    """A job that never runs during the benchmark."""


def run_ours(calls, gap, out):
    started = SimpleQueue()

    def target(ctx):
        started.put(time.time())

    specs = [(f"job-{i:03d}", _noop, HOUR) for i in range(OTHER_JOBS)]
    specs.append(("target", target, HOUR))
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        engine, store = common.make_engine(tmp, specs)
        engine.start()
        # As the server's worker does once started (gunicorn.conf.py).
        from scheduler.tuning import tune_after_start

        tune_after_start()
        drain = common.EventDrain(engine)
        common.wait_leader(engine)
        time.sleep(0.5)  # let the take-over's records and events settle

        def call():
            engine.run_now("target")

        def finished():
            return engine.job("target")["status"] != "running"

        latencies, returns = _measure(calls, gap, call, started, finished)
        drain.stop()
        common.stop_engine(engine, store)
    return latencies, returns


def run_apscheduler(calls, gap, mode):
    import logging

    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    started = SimpleQueue()

    def target():
        started.put(time.time())

    scheduler = BackgroundScheduler(timezone=UTC)
    hourly = IntervalTrigger(seconds=HOUR, timezone=UTC)
    for i in range(OTHER_JOBS):
        scheduler.add_job(_noop, hourly, id=f"job-{i:03d}")
    job = scheduler.add_job(target, hourly, id="target")
    scheduler.start()
    time.sleep(0.5)
    executor = scheduler._lookup_executor("default")

    if mode == "modify":

        def call():
            job.modify(next_run_time=datetime.now(UTC))
    else:

        def call():
            scheduler.add_job(target, next_run_time=datetime.now(UTC))

    def finished():
        # APScheduler counts a run as finished when its future's callback ran.
        with executor._lock:
            return not any(executor._instances.values())

    latencies, returns = _measure(calls, gap, call, started, finished)
    scheduler.shutdown(wait=True)
    return latencies, returns


def run_bare_pool(calls, gap):
    from concurrent.futures import ThreadPoolExecutor

    started = SimpleQueue()
    pool = ThreadPoolExecutor(max_workers=32)
    futures = []

    def target():
        started.put(time.time())

    def call():
        futures.append(pool.submit(target))

    def finished():
        return futures[-1].done()

    pool.submit(target).result()  # warm: the pool has its thread
    started.get()
    latencies, returns = _measure(calls, gap, call, started, finished)
    pool.shutdown(wait=True)
    return latencies, returns


def _measure(calls, gap, call, started, finished):
    """Time ``calls`` calls: (call to body start, call to return) in seconds."""
    rng = random.Random(7)
    latencies, returns = [], []
    for _ in range(calls):
        time.sleep(rng.uniform(*gap))
        before = time.time()
        call()
        returned = time.time()
        body = started.get(timeout=5.0)
        latencies.append(body - before)
        returns.append(returned - before)
        deadline = time.monotonic() + 5.0
        while not finished():
            if time.monotonic() > deadline:
                raise RuntimeError("The run did not finish within 5 s.")
            time.sleep(0.0005)
    return latencies, returns


def worker(contender, calls, out):
    gap = (0.005, 0.020)
    others = common.OtherLoad()
    cpu0 = time.process_time()
    if contender == "ours":
        latencies, returns = run_ours(calls, gap, out)
    elif contender == "apscheduler-modify":
        latencies, returns = run_apscheduler(calls, gap, "modify")
    elif contender == "apscheduler-add":
        latencies, returns = run_apscheduler(calls, gap, "add")
    elif contender == "bare-pool":
        latencies, returns = run_bare_pool(calls, gap)
    else:
        raise SystemExit(f"Unknown contender {contender!r}; use one of {', '.join(CONTENDERS)}.")
    common.save_worker_result(
        out,
        {
            "contender": contender,
            "calls": calls,
            "latency_ms": common.summarize(latencies),
            "call_returns_ms": common.summarize(returns),
            "cpu_s": time.process_time() - cpu0,
            "other_load_cores": others.cores(),
        },
    )


def main(argv=None):
    parser = common.worker_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per scheduler (400)")
    parser.add_argument(
        "--only", choices=CONTENDERS, action="append", help="only these (repeatable)"
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait for other processes to go quiet before each run",
    )
    common.add_baseline_option(parser)
    args = parser.parse_args(argv)
    if args.worker is not None:
        contender, calls = args.worker
        worker(contender, int(calls), args.out)
        return
    calls = 100 if args.quick else args.calls
    baseline = common.open_baseline(args.baseline, NAME)
    results = []
    for contender in args.only or CONTENDERS:
        results += common.run_contender(
            f"bench.{NAME}",
            contender,
            [calls],
            timeout=60 + calls * 0.2,
            what=f"run now ({calls} calls)",
            no_wait=args.no_wait,
            baseline=baseline,
        )
    report = render(results)
    print(report)
    path = common.write_results(
        NAME, {"other_jobs": OTHER_JOBS, "results": results, "report": report}, baseline=baseline
    )
    print(f"\nResults: {path}")


def render(results):
    ours = next((r for r in results if r["contender"] == "ours" and "error" not in r), None)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["contender"], r["error"], "", "", "", "", "", "", ""])
            continue
        reference = common.reference_row(r, results, ours)
        s, o = r["latency_ms"], (reference["latency_ms"] if reference else {})
        rows.append(
            [
                r["contender"],
                r["latency_ms"]["n"],
                common.fmt_ms(s["p50"]),
                common.fmt_ms(s["p99"]),
                common.fmt_ms(s["max"]),
                common.fmt_ms(r["call_returns_ms"]["p50"]),
                common.fmt_load(r.get("other_load_cores")),
                common.fmt_ratio(common.ratio(o.get("p50"), s["p50"])),
                common.fmt_ratio(common.ratio(o.get("p99"), s["p99"])),
            ]
        )
    lines = [
        f"\n### Run-now latency (call to body start), {OTHER_JOBS} other jobs registered\n",
        common.markdown_table(
            [
                "scheduler",
                "calls",
                "p50 ms",
                "p99 ms",
                "max ms",
                "call returns p50 ms",
                "other load",
                "ours/this p50",
                "ours/this p99",
            ],
            rows,
        ),
    ]
    if ours is not None:
        p50 = ours["latency_ms"]["p50"]
        verdict = "meets" if p50 is not None and p50 < 0.5 else "MISSES"
        lines.append(
            f"\n### Targets\n\n- ours p50 {common.fmt_ms(p50)} ms, target < 0.5 ms: {verdict}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
