"""The load client of ``bench.sse_load``: many event-stream connections in one process,
on non-blocking sockets and one ``selectors`` loop (epoll), so that a few thousand
streams cost the client little.  Talks to its parent in JSON lines (stdin/stdout).

Streams mode (default): open ``--count`` streams, at most ``--in-flight`` not yet
ready at a time (ready = the ``--ready`` marker arrived: our ``snapshot`` event or
the reference's ``retry:``), then print ``{"ready": ...}``.  From then on every event
about ``--target`` (a job dict whose ``"paused"`` flips at each control) is stamped
with ``time.monotonic()`` when its bytes came in; once every stream has seen the
n-th such change the client prints ``{"round": n, "arrivals": [...]}``.  Commands on
stdin: ``status`` and ``close``.

Churn mode (``--churn N``): N cycles of connect, wait for ready, close, at most
``--in-flight`` at a time; prints ``{"churn": ...}`` and exits.

Every wait is bounded by ``--deadline`` seconds, after which the client exits.
"""

import argparse
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time

TARGET_FIELD = b'"paused":'


class Stream:
    __slots__ = ("sock", "buffer", "head_done", "status", "ready", "arrivals", "values", "index")

    def __init__(self, sock, index):
        self.sock = sock
        self.index = index
        self.buffer = b""
        self.head_done = False
        self.status = None
        self.ready = False
        self.arrivals = []
        self.values = []


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Client:
    def __init__(self, args):
        self.args = args
        self.selector = selectors.DefaultSelector()
        request = [
            f"GET {args.path} HTTP/1.1",
            f"Host: 127.0.0.1:{args.port}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
        ]
        if args.cookie:
            request.append(f"Cookie: {args.cookie}")
        self.request = ("\r\n".join(request) + "\r\n\r\n").encode()
        self.ready_marker = args.ready.encode()
        self.target = f'"name":"{args.target}"'.encode()
        self.streams = {}
        self.connecting = 0
        self.opened = 0
        self.ready_count = 0
        self.failed = []
        self.closed_by_server = 0
        self.level_hits = {}
        self.reported = 0
        self.order_errors = 0
        self.resyncs = 0
        self.bytes = 0
        self.deadline = time.monotonic() + args.deadline

    # -- connections ----------------------------------------------------------------

    def open_one(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if self.args.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.args.rcvbuf)
        code = sock.connect_ex(("127.0.0.1", self.args.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.failed.append(f"connect: {os.strerror(code)}")
            return
        stream = Stream(sock, self.opened)
        self.opened += 1
        self.connecting += 1
        self.streams[sock.fileno()] = stream
        self.selector.register(sock, selectors.EVENT_WRITE, stream)

    def on_writable(self, stream):
        error = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self.drop(stream, f"connect: {os.strerror(error)}")
            return
        stream.sock.send(self.request)  # a few hundred bytes: fits in an empty buffer
        self.selector.modify(stream.sock, selectors.EVENT_READ, stream)

    def drop(self, stream, reason=None):
        if reason is not None:
            self.failed.append(reason)
        if not stream.ready:
            self.connecting -= 1
        self.selector.unregister(stream.sock)
        del self.streams[stream.sock.fileno()]
        stream.sock.close()

    def on_readable(self, stream, now):
        try:
            data = stream.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data = b""
            self.failed.append(f"recv: {exc}")
        if not data:
            if stream.ready:
                self.closed_by_server += 1
            self.drop(stream, None if stream.ready else "closed before ready")
            return
        self.bytes += len(data)
        buffer = stream.buffer + data
        if not stream.head_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                stream.buffer = buffer
                return
            stream.status = int(buffer[9:12])
            stream.head_done = True
            if stream.status != 200:
                self.drop(stream, f"status {stream.status}")
                return
            buffer = buffer[end + 4 :]
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            stream.buffer = buffer
            return
        complete, stream.buffer = buffer[: cut + 2], buffer[cut + 2 :]
        if not stream.ready and self.ready_marker in complete:
            stream.ready = True
            self.connecting -= 1
            self.ready_count += 1
            if self.args.churn:
                self.drop(stream)
                return
            complete = complete[complete.find(self.ready_marker) :]
            if b"event: snapshot" in complete:
                complete = complete.split(b"\n\n", 1)[1] if b"\n\n" in complete else b""
        if self.target in complete:
            for block in complete.split(b"\n\n"):
                if self.target not in block:
                    continue
                if b"event: snapshot" in block:
                    self.resyncs += 1
                    continue
                at = block.find(TARGET_FIELD)
                value = block[at + len(TARGET_FIELD) : at + len(TARGET_FIELD) + 4] == b"true"
                self.arrive(stream, now, value)

    def arrive(self, stream, now, value):
        if stream.values and stream.values[-1] == value:
            self.order_errors += 1  # the same state twice: a change was missed
        stream.arrivals.append(now)
        stream.values.append(value)
        level = len(stream.arrivals)
        self.level_hits[level] = self.level_hits.get(level, 0) + 1

    # -- loops ------------------------------------------------------------------------

    def poll(self, timeout):
        for key, mask in self.selector.select(timeout):
            if key.data is None:
                self.on_command()
                continue
            stream = key.data
            if stream.sock.fileno() not in self.streams:
                continue
            if mask & selectors.EVENT_WRITE:
                self.on_writable(stream)
            else:
                self.on_readable(stream, time.monotonic())

    def run_streams(self):
        started = time.monotonic()
        while self.opened < self.args.count or self.connecting:
            while self.opened < self.args.count and self.connecting < self.args.in_flight:
                self.open_one()
            self.poll(0.5)
            if time.monotonic() > self.deadline:
                break
        emit(
            {
                "ready": self.ready_count,
                "failed": len(self.failed),
                "failures": self.failed[:5],
                "started": started,
                "finished": time.monotonic(),
            }
        )
        self.selector.register(sys.stdin, selectors.EVENT_READ, None)
        self.running = True
        while self.running and time.monotonic() < self.deadline:
            self.poll(0.5)
            self.report_rounds()

    def report_rounds(self):
        live = len(self.streams)
        while live and self.level_hits.get(self.reported + 1, 0) >= live:
            self.reported += 1
            n = self.reported
            arrivals = [s.arrivals[n - 1] for s in self.streams.values()]
            emit({"round": n, "arrivals": arrivals})

    def on_command(self):
        line = sys.stdin.readline()
        command = line.strip()
        if command == "status" or not line:
            counts = [len(s.arrivals) for s in self.streams.values()]
            emit(
                {
                    "status": {
                        "live": len(self.streams),
                        "ready": self.ready_count,
                        "closed_by_server": self.closed_by_server,
                        "failed": len(self.failed),
                        "failures": self.failed[:5],
                        "min_changes": min(counts) if counts else 0,
                        "max_changes": max(counts) if counts else 0,
                        "order_errors": self.order_errors,
                        "resyncs": self.resyncs,
                        "bytes": self.bytes,
                    }
                }
            )
        if command == "close" or not line:
            for stream in list(self.streams.values()):
                stream.sock.close()
            self.streams.clear()
            self.running = False

    def run_churn(self):
        started = time.monotonic()
        while (
            self.opened < self.args.churn or self.connecting
        ) and time.monotonic() < self.deadline:
            while self.opened < self.args.churn and self.connecting < self.args.in_flight:
                self.open_one()
            self.poll(0.5)
        emit(
            {
                "churn": self.opened,
                "ready": self.ready_count,
                "failed": len(self.failed),
                "failures": self.failed[:5],
                "seconds": time.monotonic() - started,
            }
        )


def emit(document):
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/api/jobs/sse")
    parser.add_argument("--cookie", default="")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--target", default="bench_target")
    parser.add_argument("--ready", default="event: snapshot")
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--rcvbuf", type=int, default=0)
    parser.add_argument("--churn", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=600.0)
    args = parser.parse_args(argv)
    raise_nofile()
    client = Client(args)
    if args.churn:
        client.run_churn()
    else:
        client.run_streams()


if __name__ == "__main__":
    main()
