"""The gunicorn worker: gevent's, made to end live streams and jobs when told to stop."""

import gevent
from gunicorn.workers.ggevent import GeventWorker


class JobsGeventWorker(GeventWorker):
    """On SIGTERM, end the event streams at once (browsers reconnect elsewhere) and
    give running jobs the graceful timeout before the worker exits."""

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        engine = self.wsgi.extensions.get("jobs") if hasattr(self.wsgi, "extensions") else None
        if engine is not None:
            gevent.spawn(engine.stop, grace=max(1, self.cfg.graceful_timeout - 5))
