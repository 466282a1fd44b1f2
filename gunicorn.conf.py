"""gunicorn settings for CodexDNS jobs: ``gunicorn -c gunicorn.conf.py wsgi:app``.

One gevent worker holds thousands of live streams: each open EventSource is a
parked greenlet costing a few KiB, not a thread, and the scheduler's job bodies
run on their own native threads, so neither slows requests.

More workers (JOBS_WORKERS) are safe: they all open the same SQLite file, one
of them holds the scheduler lease and runs the jobs, the others stand by and
take over at once if it dies.  Every worker follows the others' changes through
the database, woken when the file changes, so a control posted to worker A
reaches a stream held by worker B within milliseconds.
"""

import settings as _settings
from scheduler.tuning import tune_after_start

_config = _settings.load()

bind = f"{_config['HOST']}:{_config['PORT']}"
workers = _config["JOBS_WORKERS"]
worker_class = "serving.JobsGeventWorker"
worker_connections = 10000
# Streams end on their own (JOBS_SSE_MAX_AGE) and at shutdown; jobs get this long.
graceful_timeout = 20
timeout = 30
keepalive = 5
accesslog = "-"
# gunicorn 27 opens a control socket under ~/.gunicorn by default.  Nothing here
# uses it, and a socket in the home folder of whoever runs the server is one more
# thing to secure, so it stays off.
control_socket_disable = True


def on_starting(server):
    """In the master, once: prepare the database and create the first admin."""
    from app import create_app, prepare
    from scheduler import StoreError

    try:
        prepare(create_app())
    except StoreError as exc:
        # A database that cannot be used is the operator's to fix, never replaced:
        # say so in one line (naming the file) rather than with a traceback.
        raise SystemExit(f"Not starting: {exc}") from None


def post_worker_init(worker):
    """In each worker, after gevent has patched it: start the scheduler threads."""
    worker.wsgi.extensions["jobs"].start()
    # The collector and the GIL set for latency once everything is loaded: see
    # scheduler/tuning.py.
    tune_after_start()


def worker_exit(server, worker):
    """Record what was still running and give up the lease."""
    engine = getattr(worker, "wsgi", None) and worker.wsgi.extensions.get("jobs")
    if engine is not None:
        engine.stop(grace=1)
