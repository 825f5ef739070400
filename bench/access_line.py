"""Micro-benchmark of the access line (`buddy.http.request_id.log_access`), in microseconds per
line, JSON and text: the configured console handler writing to /dev/null, a request id bound.

Run: `.venv/bin/python bench/access_line.py` (each format in its own interpreter, as the setting
is read at start-up). Environment: BENCH_LINES (50000), BENCH_ROUNDS (5; the best round is shown).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINES = int(os.environ.get("BENCH_LINES", "50000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def _child() -> None:
    import logging

    import django

    django.setup()
    from buddy.http.request_id import bind_request_id, log_access

    (handler,) = [h for h in logging.getLogger().handlers if h.get_name() == "console"]
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - for the whole run
    bind_request_id(None)
    cases = {
        "/v1 line (INFO, written)": "/v1/chat/completions",
        "lookup line (DEBUG, dropped at INFO)": "/internal/v1/auth/lookup",
    }
    for label, path in cases.items():
        best = float("inf")
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(LINES):
                log_access("POST", path, 200, started)
            best = min(best, (time.perf_counter() - started) / LINES)
        print(f"  {os.environ['LOG_FORMAT']:<4}  {label:<38} {best * 1e6:7.2f} us/line")


def main() -> None:
    print(f"== access line ({LINES} lines x {ROUNDS} rounds, best round) ==")
    for log_format in ("json", "text"):
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "buddy.settings",
            "DATABASE_URL": "sqlite:///:memory:",
            "SECRET_KEY": "bench-secret-key-not-for-production",
            "LOG_FORMAT": log_format,
            "LOG_LEVEL": "INFO",
            "BENCH_ACCESS_CHILD": "1",
        }
        subprocess.run([sys.executable, __file__], env=env, cwd=ROOT, check=True)


if __name__ == "__main__":
    if os.environ.get("BENCH_ACCESS_CHILD"):
        sys.path.insert(0, str(ROOT))
        _child()
    else:
        main()
