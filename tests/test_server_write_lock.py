"""The real server while another program holds the database's write lock (a backup,
a sqlite3 shell, another server): a request that has to write waits for the lock
off the gevent hub, so every other request and stream of the worker goes on.

Measured figures are printed (run with ``-s`` or ``-rP`` to see them).
"""

import contextlib
import sqlite3
import threading
import time

import pytest
from server_support import END, open_stream, report, running_server, signed_in

pytestmark = pytest.mark.slow

HOLD_SECONDS = 2.5  # how long the test holds the write lock
# Long enough that the sign-out waits for the lock rather than fails; the lease
# long enough that the scheduler keeps it all along (nothing else changes).
SERVER_ENV = {"JOBS_DB_BUSY_TIMEOUT": "10", "JOBS_LEASE_SECONDS": "30"}
HEARTBEAT_SECONDS = 0.5  # JOBS_SSE_HEARTBEAT in server_support
QUICK = 0.5  # an answer this fast did not wait for the lock


def drained(stream):
    """Every message the stream has received so far."""
    messages = []
    while (message := stream.next(0)) is not None and message is not END:
        messages.append(message)
    return messages


def test_signing_out_while_another_program_holds_the_write_lock_stalls_nothing_else(
    tmp_path,
):
    instance = tmp_path / "instance"
    with running_server(instance, tmp_path, env=SERVER_ENV) as server:  # one worker
        leaving = signed_in(server)
        staying = signed_in(server)
        watching, _ = open_stream(staying)
        ending, _ = open_stream(leaving)
        answer = {}

        def sign_out():
            reply = leaving.request(
                "POST", "/logout", data={"csrf_token": leaving.csrf}, timeout=20
            )
            answer.update(reply=reply, at=time.monotonic())

        poster = threading.Thread(target=sign_out, daemon=True)
        try:
            with contextlib.closing(
                sqlite3.connect(
                    instance / "jobs.db", timeout=5, isolation_level=None, check_same_thread=False
                )
            ) as other:
                other.execute("BEGIN IMMEDIATE")
                taken = time.monotonic()
                released = {}

                def release():
                    released["at"] = time.monotonic()  # at most this early
                    other.execute("ROLLBACK")
                    released["done"] = True

                timer = threading.Timer(HOLD_SECONDS, release)
                timer.start()
                try:
                    drained(watching)
                    poster.start()
                    time.sleep(0.3)  # for the sign-out to reach the server and wait
                    # Requests of another session, one after the other, while the
                    # sign-out waits; each is bounded (a stalled hub answers once
                    # the lock is released, which the timer does).
                    probes = []
                    while time.monotonic() < taken + HOLD_SECONDS - 0.3:
                        started = time.monotonic()
                        reply = staying.get("/api/jobs", timeout=HOLD_SECONDS + 10)
                        probes.append(time.monotonic() - started)
                        assert reply.status == 200, reply.text
                        time.sleep(0.05)
                finally:
                    timer.join(timeout=HOLD_SECONDS + 5)
                assert "done" in released, "the test's write lock was not released"
            poster.join(timeout=15)
            assert not poster.is_alive(), "the sign-out did not answer"
            held = [m for m in drained(watching) if taken < m.received_at < released["at"]]
            moments = [taken, *(m.received_at for m in held), released["at"]]
            silence = max(b - a for a, b in zip(moments, moments[1:], strict=False))

            report("slowest request while the sign-out waited for the lock", max(probes))
            report("longest silence of a stream while the sign-out waited", silence)
            report("sign-out answered after the lock was released", answer["at"] - released["at"])
            # Nothing waited with the sign-out: not the requests, not the other
            # session's stream...
            assert max(probes) < QUICK, f"requests took {[round(p, 3) for p in probes]} s"
            assert silence < HEARTBEAT_SECONDS + QUICK, f"a stream was silent {silence:.3f} s"
            # ...while it waited for the lock, from before the first of them was asked.
            assert answer["at"] >= released["at"], "the sign-out answered while the lock was held"

            # Once the lock is free the sign-out is done: its session no longer works,
            # anywhere (its open stream is told), and the other session still does.
            reply = answer["reply"]
            assert reply.status == 302, reply.text
            assert reply.headers["location"] == "/login"
            assert leaving.get("/api/jobs").status == 401
            ending.wait_for(lambda m: m.event == "logout", 3, "the sign-out on its stream")
            assert staying.get("/api/jobs").status == 200
        finally:
            watching.close()
            ending.close()
