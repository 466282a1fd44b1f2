"""One of several processes sharing a jobs database; whichever holds the lease runs
a 1 s job that appends ``"<slot> <pid>"`` to a file.

    python lease_worker.py DBPATH OUTFILE [LEASE_TTL] [HOLD_SECONDS]

The job writes its line as it starts and then takes HOLD_SECONDS, so a test can
kill the process while a run is in flight.  The process stops the engine on
SIGTERM and ends by itself after MAX_LIFE seconds whatever happens.
"""

import faulthandler
import logging
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from scheduler import Engine, JobRegistry, Store  # noqa: E402

MAX_LIFE = 30.0

DB_PATH, OUT_PATH = sys.argv[1], sys.argv[2]
LEASE_TTL = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
HOLD_SECONDS = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0


def beat(ctx):
    """Append this run's slot and our pid to the output file."""
    fd = os.open(OUT_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.slot!r} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    if HOLD_SECONDS:
        time.sleep(HOLD_SECONDS)


def main():
    logging.basicConfig(level=logging.WARNING, format=f"{os.getpid()} %(name)s: %(message)s")
    # A crash, or SIGUSR1 from a test that gave up waiting, prints every thread's stack.
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    faulthandler.dump_traceback_later(MAX_LIFE + 10, exit=True)
    # SIGTERM stays pending until sigtimedwait takes it; blocked before any thread
    # starts, so every thread inherits the mask and none is interrupted by it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    registry = JobRegistry()
    registry.add(beat, name="beat", category="system", interval="1s")
    store = Store(DB_PATH)
    store.migrate()
    engine = Engine(registry, store, lease_ttl=LEASE_TTL)
    engine.start()

    signal.sigtimedwait({signal.SIGTERM}, MAX_LIFE)
    # As the servers do: stop the engine and exit.  The store is not closed here:
    # stop() does not wait for the engine's threads, which may still be finishing a
    # statement on their connections.
    engine.stop(grace=5.0)


if __name__ == "__main__":
    main()
