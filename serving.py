"""The gunicorn worker: gevent's, made to end live streams and jobs when told to stop."""

import gevent
from gunicorn.workers.ggevent import GeventWorker

from scheduler.native import call_off_hub


class JobsGeventWorker(GeventWorker):
    """On SIGTERM, end the event streams at once (browsers reconnect elsewhere) and
    give running jobs the graceful timeout before the worker exits."""

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        engine = self.wsgi.extensions.get("jobs") if hasattr(self.wsgi, "extensions") else None
        if engine is not None:
            # Off the hub: stopping waits for jobs and the database, and the hub must
            # keep serving the requests that are finishing meanwhile.
            grace = max(1, self.cfg.graceful_timeout - 5)
            gevent.spawn(call_off_hub, engine.stop, grace=grace)

    def handle_request(self, listener_name, req, sock, addr):
        super().handle_request(listener_name, req, sock, addr)
        if not self.alive:
            # A response that began before SIGTERM promised keep-alive; close the
            # connection now rather than hold the worker up to `keepalive` seconds.
            raise StopIteration()
