"""`buddy.core.background.EveryFewSeconds`: the thread the hot path's recorders flush from."""

from __future__ import annotations

import logging
import threading

import pytest

from buddy.core.background import EveryFewSeconds
from tests.harness.wait import wait_until


def test_a_step_that_raises_is_logged_and_the_next_one_still_runs(caplog: pytest.LogCaptureFixture):
    calls: list[int] = []

    def step() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the first step fails")

    runner = EveryFewSeconds("test-every-few-seconds", step, lambda: 0.01)
    with caplog.at_level(logging.ERROR, logger="buddy.core.background"):
        runner.ensure_running()
        wait_until(lambda: len(calls) >= 3, timeout=10, what="three steps")
    assert "test-every-few-seconds: a periodic step failed" in caplog.text


def test_it_starts_one_thread_per_process_however_often_asked():
    started = threading.Event()
    runner = EveryFewSeconds("test-one-thread", started.set, lambda: 0.01)
    for _ in range(50):
        runner.ensure_running()
    wait_until(started.is_set, timeout=10, what="the first step")
    assert [t.name for t in threading.enumerate()].count("test-one-thread") == 1


def test_a_forked_child_knows_its_own_pid_and_starts_its_own_thread():
    """`getpid()` is read once per process, again after a fork: a child never takes its parent's
    thread (which a fork does not copy) for its own."""
    import os

    from buddy.core.redis import getpid

    assert getpid() == os.getpid()
    started = threading.Event()
    runner = EveryFewSeconds("test-forked", started.set, lambda: 0.01)
    runner.ensure_running()
    wait_until(started.is_set, timeout=10, what="the parent's first step")
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report, then leave at once (no test machinery runs here)
        try:
            ok = getpid() == os.getpid() != os.getppid()
            started.clear()
            runner.ensure_running()  # the parent's thread is not here: a new one starts
            ok = ok and runner.pid == os.getpid() and started.wait(10)
            os.write(write, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 2) == b"ok"
    finally:
        os.close(read)
        os.waitpid(child, 0)
    assert getpid() == os.getpid()
