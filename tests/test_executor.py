"""The native worker pool: blocking bodies never hold up the tasks behind them."""

import threading

import pytest

from scheduler.executor import NativeExecutor

WAIT = 5.0  # seconds; every wait below ends as soon as its event is set


@pytest.fixture
def executor():
    pool = NativeExecutor(max_workers=4, idle_timeout=30.0)
    yield pool
    pool.shutdown()


def test_tasks_behind_a_blocked_one_still_run(executor):
    release = threading.Event()
    done = [threading.Event() for _ in range(3)]
    executor.submit(lambda: release.wait(WAIT))
    for event in done:
        executor.submit(event.set)
    try:
        assert all(event.wait(WAIT) for event in done)
    finally:
        release.set()


def test_a_burst_submitted_at_once_runs_every_task_once(executor):
    seen = []
    lock = threading.Lock()
    finished = threading.Event()
    count = 1000

    def task(i):
        with lock:
            seen.append(i)
            if len(seen) == count:
                finished.set()

    executor.submit_all([lambda i=i: task(i) for i in range(count)])
    assert finished.wait(WAIT)
    assert sorted(seen) == list(range(count))
    assert executor.worker_count <= executor.max_workers


def test_no_more_threads_than_max_workers_even_when_all_block(executor):
    release = threading.Event()
    started = threading.Semaphore(0)
    names = set()

    def block():
        names.add(threading.get_ident())
        started.release()
        release.wait(WAIT)

    for _ in range(6):
        executor.submit(block)
    try:
        for _ in range(4):
            assert started.acquire(timeout=WAIT)
        assert executor.worker_count == 4
        assert executor.pending() == 2  # waiting for a worker to come free
    finally:
        release.set()
    for _ in range(2):
        assert started.acquire(timeout=WAIT)
    assert len(names) == 4


def test_a_task_that_raises_does_not_take_its_worker_down(caplog):
    pool = NativeExecutor(max_workers=1)
    done = threading.Event()
    pool.submit(lambda: 1 / 0)
    pool.submit(done.set)
    try:
        assert done.wait(WAIT)
    finally:
        pool.shutdown()
    assert "raised outside its own handler" in caplog.text


def test_idle_workers_exit_and_new_ones_start_when_needed():
    pool = NativeExecutor(max_workers=2, idle_timeout=0.05)
    try:
        first = threading.Event()
        pool.submit(first.set)
        assert first.wait(WAIT)
        exited = threading.Event()
        for _ in range(100):  # bounded: 100 x 0.05 s
            if pool.worker_count == 0:
                exited.set()
                break
            exited.wait(0.05)
        assert exited.is_set(), "the idle worker did not exit"
        second = threading.Event()
        pool.submit(second.set)
        assert second.wait(WAIT)
    finally:
        pool.shutdown()


def test_it_tells_when_the_last_waiting_task_is_taken():
    drained = threading.Event()
    pool = NativeExecutor(max_workers=1, on_drained=drained.set)
    started, release = threading.Event(), threading.Event()
    pool.submit(lambda: (started.set(), release.wait(WAIT)))
    try:
        assert started.wait(WAIT) and drained.wait(WAIT)
        drained.clear()
        pool.submit(lambda: None)
        assert pool.pending() == 1
        assert not drained.is_set()  # the task still waits for the only worker
    finally:
        release.set()
    assert drained.wait(WAIT)
    pool.shutdown()


def test_a_shut_down_executor_refuses_work_and_bad_sizes_are_refused():
    pool = NativeExecutor(max_workers=1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: None)
    with pytest.raises(ValueError, match="at least 1"):
        NativeExecutor(max_workers=0)
