"""The reference for ``bench.sse_load``: a bare gevent Server-Sent Events broadcaster.

A WSGI app of a few dozen lines, served the same way as ours (gunicorn, one gevent
worker): every ``GET /sse`` gets its own queue and a greenlet parked on it; ``POST
/broadcast`` puts the posted bytes, as one ``job`` event, on every queue.  No
sign-in, no versions, no coalescing, an unbounded queue per client.  ``GET
/api/jobs`` serialises a list of job dicts (``BENCH_REFERENCE_JOBS``, a JSON file)
on every request, the floor for our ``GET /api/jobs``.  ``GET /stats`` reports the
client count and garbage-collector pauses for the benchmark.

    gunicorn -k gevent -w 1 --worker-connections 10000 bench.reference_sse:app
"""

import json
import os
from pathlib import Path

from gevent.queue import Empty, Queue

from bench.gc_pauses import GcPauses

HEARTBEAT = 15.0
clients = set()
counter = [0]
gc_pauses = GcPauses().install().stats
_jobs_file = os.environ.get("BENCH_REFERENCE_JOBS")
JOBS = json.loads(Path(_jobs_file).read_text()) if _jobs_file else []


def app(environ, start_response):
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/sse" and method == "GET":
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return stream()
    if path == "/broadcast" and method == "POST":
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        counter[0] += 1
        message = b"event: job\nid: %d\ndata: %s\n\n" % (counter[0], data)
        for queue in list(clients):
            queue.put(message)
        return reply(start_response, {"clients": len(clients)})
    if path == "/api/jobs" and method == "GET":
        return reply(start_response, {"version": counter[0], "jobs": [dict(j) for j in JOBS]})
    if path == "/stats" and method == "GET":
        return reply(start_response, {"subscribers": len(clients), "gc": gc_pauses})
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def reply(start_response, document):
    body = json.dumps(document).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def stream():
    queue = Queue()
    clients.add(queue)
    try:
        yield b"retry: 3000\n\n"
        while True:
            try:
                yield queue.get(timeout=HEARTBEAT)
            except Empty:
                yield b": heartbeat\n\n"
    finally:
        clients.discard(queue)
