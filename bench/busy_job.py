"""A busy job next to others, in a gevent-monkey-patched process (as under
gunicorn's gevent worker): lateness of the other jobs' starts, delivery of events
to a greenlet subscriber, and how late the hub wakes a sleeping greenlet.

Each case runs in its own process that calls ``gevent.monkey.patch_all()`` first:

- ours: the Engine (SQLite file, run writer), one job spinning in pure Python for
  the whole window, 20 jobs every second at offsets spread over the second, and a
  greenlet reading events.  Each tick stamps ``time.time()`` into
  ``ctx.progress(..., "t=<stamp>")``; the subscriber greenlet takes the time it
  receives that event minus the stamp.  The tick then keeps its run open 200 ms so
  its finish does not replace the progress event before it is read (an event
  still unread after 200 ms counts as lost).
- ours-quiet: the same without the busy job, for comparison.
- apscheduler: BackgroundScheduler in the same patched process (its threads are
  greenlets), the same busy job and ticks.  It has no event stream.

A second greenlet sleeps 10 ms in a loop and records how late it wakes (hub lag:
what a request handled by this worker would wait).

    .venv/bin/python -m bench.busy_job           # 15 s window each, ~1 minute
    .venv/bin/python -m bench.busy_job --quick   # 5 s
"""

import sys

if "--worker" in sys.argv:  # the measured process: patch before anything else is imported
    from gevent import monkey

    monkey.patch_all()

import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

NAME = "busy_job"
WHAT_IF_SWITCH_INTERVAL = [0.0]
CONTENDERS = ("ours", "ours-quiet", "apscheduler")
TICKS = 20
HOLD = 0.2  # seconds a tick keeps its run open after reporting progress
LEAD = 1.5
WARMUP = 1.0
TAIL = 1.0


def spin_until(moment, cancelled=lambda: False):
    """Pure-Python work until ``moment`` (wall clock)."""
    x = 0
    while time.time() < moment and not cancelled():
        for _ in range(2000):
            x = (x * 31 + 7) % 1000003
    return x


def run_ours(base, window, busy, samples, delivered, stamped):
    import gevent

    from scheduler import RESYNC

    native_sleep = monkey.get_original("time", "sleep")

    def tick(ctx):
        started = time.time()
        samples.append((ctx.slot, started))
        stamp = repr(time.time())
        stamped.add(stamp)
        ctx.progress(0.5, "t=" + stamp)
        native_sleep(HOLD)

    def busy_job(ctx):
        spin_until(window[1], lambda: ctx.cancelled)

    specs = [(f"tick-{i:02d}", tick, 1) for i in range(TICKS)]
    slots = {f"tick-{i:02d}": base + i / TICKS for i in range(TICKS)}
    if busy:
        specs.append(("busy", busy_job, 3600))
        slots["busy"] = base - 0.5  # running before the first tick's slot
    stats = {"resyncs": 0}
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        engine, store = common.make_engine(tmp, specs, first_slots=slots)
        subscription = engine.subscribe()  # on the hub's thread: waits on a gevent Event
        engine.start()
        # As the server's worker does once started (gunicorn.conf.py).
        from scheduler.tuning import tune_after_start

        tune_after_start()
        if WHAT_IF_SWITCH_INTERVAL[0]:
            sys.setswitchinterval(WHAT_IF_SWITCH_INTERVAL[0])
        common.wait_leader(engine)
        done = []

        def reader():
            seen = set()
            while not done and not subscription.closed:
                events = subscription.get(timeout=1.0)
                received = time.time()
                if events == RESYNC:
                    stats["resyncs"] += 1
                    continue
                for event in events:
                    progress = event.data.get("progress")
                    if not progress or not progress["message"].startswith("t="):
                        continue
                    stamp = progress["message"][2:]
                    if stamp not in seen:
                        seen.add(stamp)
                        delivered.append((float(stamp), received - float(stamp)))

        greenlet = gevent.spawn(reader)
        yield
        done.append(True)
        common.stop_engine(engine, store, grace=5.0)
        greenlet.join(2.0)
    yield stats


def run_apscheduler(base, window, busy, samples):
    import logging
    from datetime import UTC, datetime

    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    slot_of = common.record_apscheduler_slots()

    def tick():
        started = time.time()
        samples.append((slot_of.run_time.timestamp(), started))

    scheduler = BackgroundScheduler(timezone=UTC)
    for i in range(TICKS):
        start = datetime.fromtimestamp(base + i / TICKS, UTC)
        scheduler.add_job(
            tick, IntervalTrigger(seconds=1, start_date=start, timezone=UTC), id=f"tick-{i}"
        )
    if busy:
        scheduler.add_job(
            spin_until,
            DateTrigger(datetime.fromtimestamp(base - 0.5, UTC)),
            args=[window[1]],
            id="busy",
        )
    scheduler.start()
    yield
    scheduler.shutdown(wait=True)
    yield {}


def worker(contender, duration, switch_interval, out):
    import gevent

    WHAT_IF_SWITCH_INTERVAL[0] = switch_interval  # applied after the server's own settings

    base = time.time() + LEAD
    window = (base + WARMUP, base + WARMUP + duration)
    samples, delivered, stamped = [], [], set()
    if contender in ("ours", "ours-quiet"):
        steps = run_ours(base, window, contender == "ours", samples, delivered, stamped)
    elif contender == "apscheduler":
        steps = run_apscheduler(base, window, True, samples)
    else:
        raise SystemExit(f"Unknown contender {contender!r}; use one of {', '.join(CONTENDERS)}.")
    next(steps)
    lags = []
    stop = []

    def hub_lag():
        while not stop:
            asleep_at, before = time.time(), time.perf_counter()
            gevent.sleep(0.010)
            late = time.perf_counter() - before - 0.010
            # Every sleep that overlaps the window counts, so a hub blocked through
            # the whole window shows as one very late wake-up.
            if asleep_at < window[1] and time.time() >= window[0]:
                lags.append(late)

    lag_greenlet = gevent.spawn(hub_lag)
    others = None
    while time.time() < window[1] + TAIL + HOLD:
        if others is None and time.time() >= window[0]:
            others = common.OtherLoad()
        gevent.sleep(0.05)
    other_cores = others.cores() if others else None
    stop.append(True)
    lag_greenlet.join(1.0)
    extra = next(steps)
    lateness = [start - slot for slot, start in samples if window[0] <= slot < window[1]]
    in_window = [d for stamp, d in delivered if window[0] <= stamp < window[1]]
    stamped_in_window = sum(1 for s in stamped if window[0] <= float(s) < window[1])
    common.save_worker_result(
        out,
        {
            "contender": contender,
            "ticks": TICKS,
            "duration_s": duration,
            "expected_runs": TICKS * int(duration),
            "runs": len(lateness),
            "lateness_ms": common.summarize(lateness),
            "event_delivery_ms": common.summarize(in_window)
            if contender != "apscheduler"
            else None,
            "events_stamped": stamped_in_window,
            "events_lost": stamped_in_window - len(in_window)
            if contender != "apscheduler"
            else None,
            "hub_lag_ms": common.summarize(lags),
            "switch_interval_s": sys.getswitchinterval(),
            "other_load_cores": other_cores,
            **extra,
        },
    )


def main(argv=None):
    parser = common.worker_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=15.0, help="seconds measured per case (15)"
    )
    parser.add_argument(
        "--only", choices=CONTENDERS, action="append", help="only these (repeatable)"
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=0.0,
        help="also run ours with sys.setswitchinterval(S) (a what-if: CPython's default "
        "is 0.005 s; a thread waiting for the GIL waits up to that long)",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait for other processes to go quiet before each run",
    )
    common.add_baseline_option(parser)
    args = parser.parse_args(argv)
    if args.worker is not None:
        contender, duration, switch_interval = args.worker
        worker(contender, int(float(duration)), float(switch_interval), args.out)
        return
    duration = 5 if args.quick else int(args.duration)
    baseline = common.open_baseline(args.baseline, NAME)
    results = []
    cases = [(c, 0.0) for c in (args.only or CONTENDERS)]
    if args.switch_interval:
        cases.append(("ours", args.switch_interval))
    for contender, switch_interval in cases:
        label = contender
        if switch_interval:
            label = f"{contender}, switch interval {switch_interval * 1000:g} ms"
        results += common.run_contender(
            f"bench.{NAME}",
            contender,
            [duration, switch_interval],
            timeout=duration + 60,
            what=f"busy job ({duration} s)",
            no_wait=args.no_wait,
            baseline=baseline,
            label=label,
        )
    report = render(results)
    print(report)
    path = common.write_results(NAME, {"results": results, "report": report}, baseline=baseline)
    print(f"\nResults: {path}")


def render(results):
    ours = next((r for r in results if r["contender"] == "ours" and "error" not in r), None)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["contender"], r["error"]] + [""] * 12)
            continue
        s, e, h = r["lateness_ms"], r["event_delivery_ms"] or {}, r["hub_lag_ms"]
        reference = common.reference_row(r, results, ours)
        o = reference["lateness_ms"] if reference else {}
        rows.append(
            [
                r["contender"],
                f"{r['runs']}/{r['expected_runs']}",
                common.fmt_ms(s["p50"]),
                common.fmt_ms(s["p99"]),
                common.fmt_ms(s["max"]),
                common.fmt_ms(e.get("p50")),
                common.fmt_ms(e.get("p99")),
                common.fmt_ms(e.get("max")),
                "n/a" if r["events_lost"] is None else str(r["events_lost"]),
                common.fmt_ms(h["p99"]),
                common.fmt_ms(h["max"]),
                common.fmt_load(r.get("other_load_cores")),
                common.fmt_ratio(common.ratio(o.get("p99"), s["p99"])),
            ]
        )
    lines = [
        f"\n### A busy pure-Python job under gevent: {TICKS} jobs every 1 s beside it\n",
        common.markdown_table(
            [
                "case",
                "runs/slots",
                "late p50",
                "late p99",
                "late max",
                "event p50",
                "event p99",
                "event max",
                "events lost",
                "hub lag p99",
                "hub lag max",
                "other load",
                "ours/this late p99",
            ],
            rows,
        ),
        "\n(all times in ms)",
    ]
    if ours is not None:
        late = ours["lateness_ms"]["p99"]
        event = (ours["event_delivery_ms"] or {}).get("p99")
        ok = all(v is not None and v < 20 for v in (late, event)) and not ours["events_lost"]
        lines.append(
            f"\n### Targets\n\n- with the busy job: lateness p99 {common.fmt_ms(late)} ms, event "
            f"delivery p99 {common.fmt_ms(event)} ms, {ours['events_lost']} lost; target both "
            f"< 20 ms: {'meets' if ok else 'MISSES'}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
