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
