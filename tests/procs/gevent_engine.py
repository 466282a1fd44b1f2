"""Run the engine beside a CPU-bound job and report, as one JSON line, how the rest
of the process fared.

    python gevent_engine.py MODE DBPATH [BUSY_SECONDS]

MODE:

- ``gevent``: monkey-patch first, as gunicorn's gevent worker does, then start
  the engine; the probes are greenlets on the hub.
- ``threads``: a plain process; the probes are ordinary threads.
- ``greenlet``: monkey-patched, no engine: the busy body runs on a greenlet, as a
  scheduler built on the patched ``threading`` would run it.  This is the control
  that shows the probes (and gevent's own monitor) do see a blocked hub.

The probes: one sleeps 10 ms in a loop and records how late it wakes; another
subscribes to the engine's events and records when they arrive.  A 1 s ``tick``
job records when it starts.  The process ends by itself within about 15 s.
"""

import sys

MODE = sys.argv[1]
if MODE in ("gevent", "greenlet"):
    from gevent import monkey

    monkey.patch_all()

import faulthandler  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from scheduler import RESYNC, Engine, JobRegistry, Store  # noqa: E402
from scheduler.native import get_ident as native_ident  # noqa: E402

DB_PATH = sys.argv[2]
BUSY_SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 3.5
PROBE_SLEEP = 0.01
PROGRESS_EVERY = 0.05

# Never linger, whatever goes wrong: dump every thread's stack and exit.
faulthandler.dump_traceback_later(BUSY_SECONDS + 20, exit=True)

record = {"mode": MODE, "busy_seconds": BUSY_SECONDS}
ticks = []  # (slot, entered_at, native thread) from the tick job's body
gaps = []  # (went to sleep, woke, how much later than asked it woke): wall times, s
arrivals = []  # (arrived_at, key, status, latency of a progress event or None)
blocked_reports = []  # gevent's monitor thread: EventLoopBlocked events
done = False


def busy(ctx):
    """Spin in pure Python for BUSY_SECONDS, reporting progress as it goes."""
    record["busy_thread"] = native_ident()
    record["busy_start"] = time.time()
    start = time.perf_counter()
    next_report = start
    x = iterations = 0
    while True:
        for _ in range(1000):
            x = (x * 31 + 7) % 1000003
        iterations += 1000
        now = time.perf_counter()
        if now - start >= BUSY_SECONDS:
            break
        if ctx is not None and now >= next_report:
            # The message carries the wall time, so the listener can tell the latency.
            ctx.progress((now - start) / BUSY_SECONDS, repr(time.time()))
            ctx.log.info("%d iterations", iterations)
            next_report += PROGRESS_EVERY
    record["busy_end"] = time.time()
    record["iterations"] = iterations


def tick(ctx):
    """Note when this run started."""
    ticks.append((ctx.slot, time.time(), native_ident()))


def probe():
    """Sleep 10 ms at a time and record how late each wake-up is."""
    record["probe_thread"] = native_ident()
    while not done:
        slept_at, before = time.time(), time.perf_counter()
        time.sleep(PROBE_SLEEP)
        gaps.append((slept_at, time.time(), time.perf_counter() - before - PROBE_SLEEP))


def listen(subscription):
    """Receive the engine's events; time the busy job's progress reports."""
    record["listener_thread"] = native_ident()
    record["resyncs"] = 0
    while not done:
        events = subscription.get(timeout=0.2)
        arrived = time.time()
        if events == RESYNC:
            record["resyncs"] += 1
            continue
        for event in events:
            if event.kind != "job":
                continue
            progress = event.data["progress"]
            latency = None
            if event.key == "busy" and progress:
                latency = arrived - float(progress["message"])
            arrivals.append((arrived, event.key, event.data["status"], latency))


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def main():
    global done
    if MODE != "threads":
        import gevent
        from gevent import events as gevent_events

        def on_gevent_event(event):
            if isinstance(event, gevent_events.EventLoopBlocked):
                blocked_reports.append(repr(event))

        gevent_events.subscribers.append(on_gevent_event)
        record["patched"] = monkey.is_module_patched("threading")
        record["hub_thread"] = gevent.get_hub().thread_ident
    record["main_thread"] = native_ident()

    # Under monkey-patching these are greenlets on the hub; otherwise native threads.
    probe_thread = threading.Thread(target=probe, name="probe")
    if MODE == "greenlet":
        probe_thread.start()
        time.sleep(0.3)
        threading.Thread(target=busy, args=(None,), name="busy-greenlet").start()
        record["busy_finished"] = wait_until(lambda: "busy_end" in record, BUSY_SECONDS + 5)
        time.sleep(0.3)
        done = True
        probe_thread.join(2.0)
        report()
        return

    registry = JobRegistry()
    registry.add(busy, name="busy", category="system", interval="1h")
    registry.add(tick, name="tick", category="system", interval="1s")
    store = Store(DB_PATH)
    store.migrate()
    engine = Engine(registry, store, lease_ttl=2.0)
    subscription = engine.subscribe()
    engine.start()
    try:
        if not wait_until(lambda: engine.leader, 5.0):
            raise SystemExit("The engine did not take the lease within 5 s.")
        listener = threading.Thread(target=listen, args=(subscription,), name="listener")
        probe_thread.start()
        listener.start()
        time.sleep(0.3)
        engine.run_now("busy")
        record["busy_finished"] = wait_until(
            lambda: "busy_end" in record and engine.job("busy")["status"] != "running",
            BUSY_SECONDS + 5,
        )
        time.sleep(0.3)
        done = True
        probe_thread.join(2.0)
        listener.join(2.0)
        engine.writer.flush()
        rows = store.runs("tick", 100)
        record["busy_outcomes"] = [row["outcome"] for row in store.runs("busy", 10)]
    finally:
        done = True
        engine.stop(grace=2.0)  # the store stays open: stop() does not join the threads

    during = busy_window()
    record["tick_rows"] = [
        {
            "slot": row["slot"],
            "dispatch_lateness_ms": 1000 * (row["started_at"] - row["slot"]),
            "outcome": row["outcome"],
            "during_busy": during(row["started_at"]),
        }
        for row in rows
    ]
    record["ticks"] = [
        {
            "slot": slot,
            "body_lateness_ms": 1000 * (entered - slot),
            "thread": thread,
            "during_busy": during(entered),
        }
        for slot, entered, thread in ticks
    ]
    latencies = [lat for at, _, _, lat in arrivals if lat is not None and during(at)]
    record["progress_latencies_ms"] = sorted(1000 * lat for lat in latencies)
    record["tick_events_during_busy"] = sum(
        1 for at, key, _, _ in arrivals if key == "tick" and during(at)
    )
    report()


def busy_window():
    start, end = record.get("busy_start", 0.0), record.get("busy_end", 0.0)
    return lambda at: start <= at <= end


def report():
    """Add the probe's figures and print everything as one JSON line."""
    start, end = record.get("busy_start", 0.0), record.get("busy_end", 0.0)
    # A sleep that overlaps the busy window counts: on a blocked hub the probe's one
    # sleep spans the whole busy run and wakes only after it.
    busy_gaps = [gap for slept, woke, gap in gaps if woke >= start and slept <= end]
    record["probe_samples"] = len(gaps)
    record["hub_gaps_ms"] = sorted(1000 * gap for gap in busy_gaps)
    record["max_gap_ms_before_busy"] = 1000 * max(
        (gap for _, woke, gap in gaps if woke < start), default=-1.0
    )
    record["blocked_reports"] = blocked_reports
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
