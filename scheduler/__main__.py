"""Run the scheduler with the built-in jobs and log each run: ``python -m scheduler``."""

import logging
import os
import signal

from jobs import build_registry

from .engine import Engine
from .native import SimpleQueue
from .store import Store
from .tuning import tune_after_start


def main():
    """Start the engine on ``$JOBS_INSTANCE_PATH/jobs.db`` and run until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    instance = os.environ.get("JOBS_INSTANCE_PATH", "instance")
    demo = os.environ.get("JOBS_DEMO", "0").strip().lower()
    if demo not in ("0", "1", "true", "false", ""):
        raise SystemExit(f"Unexpected value JOBS_DEMO={demo!r}; use 1 or 0.")
    settings = {"JOBS_DEMO": demo in ("1", "true"), "JOBS_INSTANCE_PATH": instance}
    store = Store(os.path.join(instance, "jobs.db"))
    store.migrate()
    engine = Engine(build_registry(settings), store, settings=settings)
    stop = SimpleQueue()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.put(None))
    engine.start()
    tune_after_start()
    logging.getLogger("scheduler").info(
        "Running %d jobs from %s; Ctrl-C stops", len(engine.registry), store.path
    )
    stop.get()
    engine.stop()


if __name__ == "__main__":
    main()
