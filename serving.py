"""The gunicorn worker: gevent's, made to end live streams and jobs when told to stop."""

import errno
import time

import gevent
from gunicorn.workers.ggevent import GeventWorker

from scheduler.native import call_off_hub

# Seconds of the graceful timeout kept back for recording the runs and releasing the
# lease after the jobs' grace period, before the arbiter would kill the worker.
STOP_MARGIN = 5


class JobsGeventWorker(GeventWorker):
    """On SIGTERM, end the event streams at once (browsers reconnect elsewhere) and
    give running jobs the graceful timeout before the worker exits."""

    _engine_stop = None  # the greenlet stopping the engine, once SIGTERM came

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        engine = self.wsgi.extensions.get("jobs") if hasattr(self.wsgi, "extensions") else None
        if engine is not None and self._engine_stop is None:
            # Off the hub: stopping waits for jobs and the database, and the hub must
            # keep serving the requests that are finishing meanwhile.
            grace = max(1, self.cfg.graceful_timeout - STOP_MARGIN)
            self._engine_stop = gevent.spawn(call_off_hub, engine.stop, grace=grace)

    def run(self):
        super().run()
        # gevent's run() returns as soon as no request is open, and the streams end at
        # SIGTERM, so without this wait the process would exit at once: the job
        # threads would die mid-run, unrecorded, and the lease would be left to expire.
        stopping = self._engine_stop
        if stopping is None:
            return
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while not stopping.ready() and time.monotonic() < deadline:
            self.notify()
            stopping.join(timeout=1.0)

    def handle_request(self, listener_name, req, sock, addr):
        try:
            super().handle_request(listener_name, req, sock, addr)
        except TimeoutError as exc:
            # A live stream whose client stopped reading (JOBS_SSE_SEND_TIMEOUT):
            # dropped like a client that went away, with a line in the log
            # instead of a traceback.
            self.log.info("Dropped %s: it stopped reading its event stream", addr)
            raise BrokenPipeError(errno.EPIPE, "the client stopped reading") from exc
        if not self.alive:
            # A response that began before SIGTERM promised keep-alive; close the
            # connection now rather than hold the worker up to `keepalive` seconds.
            raise StopIteration()
