"""The app as ``bench.sse_load`` serves it: ``wsgi.py``'s app plus, for the benchmark only,

- ``bench_1s``, a job every second whose body records how late it started (``time.time()``
  on its first line minus ``ctx.slot``), and ``bench_target``, a daily job the benchmark
  pauses and resumes (it never runs);
- ``BENCH_TOTAL_JOBS=N``: daily filler jobs up to N jobs in all, so ``GET /api/jobs`` can
  be measured with 100;
- ``GET /bench/profile`` (loopback only): start and stop cProfile in the worker;
- ``GET /bench/stats`` (loopback only): the event bus's subscriber count, the lateness
  samples, and the worker's garbage-collector pauses (timed with ``gc.callbacks``);
- ``BENCH_SSE_SEND_TIMEOUT=S``: a what-if for the product: the stream's socket gets a
  timeout of S seconds, so a write to a client that stopped reading fails after S
  seconds instead of waiting for ever (gunicorn then closes the connection and the
  stream's ``finally`` unsubscribes);
- ``BENCH_GC=freeze`` (``gc.freeze()`` once the app is built) or ``BENCH_GC=T0,T1,T2``
  (``gc.set_threshold``), for what-ifs.  Default: the interpreter's collector as is.

    gunicorn -c gunicorn.conf.py bench.sse_app:app
"""

import gc
import os
import time
from collections import deque

from flask import abort, jsonify, request

import settings
from app import create_app
from bench.gc_pauses import GcPauses
from jobs import build_registry

LATENESS = deque(maxlen=100_000)
_pauses = GcPauses()
GC = _pauses.stats


def bench_1s(ctx):
    """Record how late this run started against its slot."""
    started = time.time()
    if ctx.slot is not None:
        LATENESS.append((ctx.slot, started - ctx.slot))


def bench_target(ctx):
    """Never runs during the benchmark: it is paused and resumed."""


def bench_filler(ctx):
    """Never runs during the benchmark: it makes the job list longer."""


def build_app():
    config = settings.load()
    job_settings = {
        "JOBS_DEMO": config["JOBS_DEMO"],
        "JOBS_INSTANCE_PATH": config["JOBS_INSTANCE_PATH"],
    }
    registry = build_registry(job_settings)
    registry.add(bench_1s, name="bench_1s", category="bench", interval="1s")
    registry.add(bench_target, name="bench_target", category="bench", interval="1d")
    total = int(os.environ.get("BENCH_TOTAL_JOBS", "0"))
    for i in range(max(0, total - len(registry))):
        registry.add(bench_filler, name=f"bench_filler_{i:03d}", category="bench", interval="1d")
    flask_app = create_app({**config, "JOBS_REGISTRY": registry})

    @flask_app.get("/bench/stats")
    def bench_stats():
        if request.remote_addr != "127.0.0.1":
            abort(404)
        since = float(request.args.get("since", "0"))
        engine = flask_app.extensions["jobs"]
        return jsonify(
            subscribers=engine.bus.subscriber_count,
            lateness=[[slot, late] for slot, late in list(LATENESS) if slot >= since],
            gc=GC,
            gc_threshold=gc.get_threshold(),
            gc_frozen=gc.get_freeze_count(),
        )

    profile = {}

    @flask_app.get("/bench/profile")
    def bench_profile():
        """``?do=start``, then ``?do=stop&path=FILE``: cProfile of the worker's main
        thread, where the hub and every greenlet run."""
        if request.remote_addr != "127.0.0.1":
            abort(404)
        import cProfile

        if request.args.get("do") == "start":
            profile["p"] = cProfile.Profile()
            profile["p"].enable()
            return jsonify(started=True)
        running = profile.pop("p", None)
        if running is None:
            abort(409)
        running.disable()
        running.dump_stats(request.args["path"])
        return jsonify(stopped=True)

    send_timeout = float(os.environ.get("BENCH_SSE_SEND_TIMEOUT", "0"))
    if send_timeout > 0:
        inner = flask_app.wsgi_app

        def with_send_timeout(environ, start_response):
            sock = environ.get("gunicorn.socket")
            if sock is not None and environ.get("PATH_INFO") == "/api/jobs/sse":
                sock.settimeout(send_timeout)
            return inner(environ, start_response)

        flask_app.wsgi_app = with_send_timeout

    _pauses.install()
    mode = os.environ.get("BENCH_GC", "")
    if mode == "freeze":
        gc.collect()
        gc.freeze()
    elif mode:
        gc.set_threshold(*(int(part) for part in mode.split(",")))
    return flask_app


app = build_app()
