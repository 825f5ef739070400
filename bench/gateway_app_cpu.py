"""The gateway's own CPU per request, without an HTTP server, beside the relay sketch's.

`bench/gateway.py` measures whole servers under wrk: the right end-to-end number, but on a shared
2-core machine its rounds move by ±10 %, more than most single changes to the hot path are worth.
This one drives both ASGI apps directly in one process and one event loop (uvloop when installed),
`BENCH_CONCURRENCY` requests in flight, against the same mock model server (its own uvicorn
process) and the same Redis, and counts the process's CPU time per request (`time.process_time`),
interleaved in rounds: buddy (`buddy.asgi.application`, a cached key, its access line written to a
file at INFO as in production) and the sketch of `bench/gateway.py` (one Redis GET, one HMAC, one
pooled aiohttp POST). What uvicorn costs per request is the same for both and left out, so the
difference between the two is what buddy's own code costs. buddy runs twice per round, with usage
recording on (as deployed) and off (`BUDDY_USAGE_RECORDING=false`): the difference is what
recording costs a request (README "Usage"); and the same for streams of `BENCH_STREAM_CHUNKS`
chunks (`BENCH_STREAM_REQUESTS` per round), per chunk.

Run: `.venv/bin/python bench/gateway_app_cpu.py` (PostgreSQL and Redis as for `make bench-gateway`).
Environment: BENCH_DATABASE_URL, BENCH_REDIS_URL (as bench/gateway.py), BENCH_REQUESTS (4000 per
round), BENCH_ROUNDS (5), BENCH_CONCURRENCY (16), BENCH_BUDDY_LOG_LEVEL (INFO),
BENCH_STREAM_REQUESTS (160 per round), BENCH_STREAM_CHUNKS (200, as bench/gateway.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

# bench/gateway.py, under another name: `gateway` is buddy's package.
_spec = importlib.util.spec_from_file_location(
    "bench_gateway", Path(__file__).with_name("gateway.py")
)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "4000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
STREAM_REQUESTS = int(os.environ.get("BENCH_STREAM_REQUESTS", "160"))


def _recording(on: bool) -> None:
    """Usage recording on or off for what runs next (the gateway reads it once per settings)."""
    from django.conf import settings

    from buddy.core.conf import forget

    settings.BUDDY_USAGE_RECORDING = on
    forget()


def _scope(key: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(bench.CHAT)).encode()),
        ],
        "state": {},
    }


async def _one(app: Any, scope: dict[str, Any], body: bytes) -> int:
    sent_body = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays until the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


async def _round(app: Any, scope: dict[str, Any], body: bytes, requests: int = REQUESTS) -> float:
    """CPU seconds per request of `requests` requests, `CONCURRENCY` at a time."""
    per_worker = requests // CONCURRENCY

    async def worker() -> None:
        for _ in range(per_worker):
            status = await _one(app, scope, body)
            if status != 200:
                raise SystemExit(f"answered {status}")

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (time.process_time() - started) / (per_worker * CONCURRENCY)


def main() -> None:
    bench.ensure_database()
    # buddy's log lines (its access line at INFO) go to a file, as under the real server.
    path = os.environ.get("BENCH_LOG_FILE") or Path(tempfile.mkdtemp(prefix="bench-")) / "buddy.log"
    log = open(path, "ab")  # noqa: SIM115 - for the whole run
    os.dup2(log.fileno(), 2)
    os.environ.update(
        {**bench.SERVER_ENV, "LOG_LEVEL": os.environ.get("BENCH_BUDDY_LOG_LEVEL", "INFO")}
    )
    sys.path.insert(0, str(bench.ROOT))
    import django

    django.setup()
    import redis

    r = redis.Redis.from_url(bench.REDIS_URL)
    for name in r.scan_iter("buddy:lookup:*", count=1000):
        r.delete(name)
    work = Path(tempfile.mkdtemp(prefix="bench-app-cpu-"))
    (work / "bench_mock.py").write_text(bench.MOCK_APP)
    port = bench._free_port()
    chunks = {"BENCH_STREAM_CHUNKS": str(bench.STREAM_CHUNKS)}
    mock = bench.start_uvicorn("bench_mock:app", port, chunks, work)
    try:
        mock_url = f"http://127.0.0.1:{port}"
        key = bench.create_key(mock_url)
        r.set(
            f"sketch:{key[6:18]}",
            hmac.new(bench.PEPPER, key.encode(), hashlib.sha256).hexdigest() + "|" + mock_url,
        )
        os.environ.update(
            {"BENCH_PEPPER": bench.PEPPER.decode(), "BENCH_REDIS_URL": bench.REDIS_URL}
        )
        sketch = types.ModuleType("bench_sketch")
        exec(compile(bench.SKETCH_APP, "bench_sketch", "exec"), sketch.__dict__)  # noqa: S102

        from buddy.asgi import application as buddy_app

        apps = {"buddy": buddy_app, "buddy_off": buddy_app, "sketch": sketch.app}
        scope, body = _scope(key), bench.CHAT.encode()
        stream_body = bench.STREAM_CHAT.encode()
        stream_scope = _scope(key)
        stream_scope["headers"] = [
            (b"content-length", str(len(stream_body)).encode()) if name == b"content-length"
            else (name, value)
            for name, value in stream_scope["headers"]
        ]  # fmt: skip

        async def run() -> dict[str, list[float]]:
            for app in apps.values():  # warm: connections, the key's cache entry, imports
                for _ in range(50):
                    assert await _one(app, scope, body) == 200
            cpu: dict[str, list[float]] = {name: [] for name in [*apps, "stream", "stream_off"]}
            for _ in range(ROUNDS):
                for name, app in apps.items():
                    _recording(name != "buddy_off")
                    cpu[name].append(await _round(app, scope, body))
                for name in ("stream", "stream_off"):
                    _recording(name == "stream")
                    per_stream = await _round(buddy_app, stream_scope, stream_body, STREAM_REQUESTS)
                    cpu[name].append(per_stream / bench.STREAM_CHUNKS)
            _recording(True)
            return cpu

        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        cpu = runner(run())
    finally:
        mock.terminate()
        mock.wait(10)
    buddy_us = statistics.median(cpu["buddy"]) * 1e6
    sketch_us = statistics.median(cpu["sketch"]) * 1e6
    rounds = ", ".join(f"{b / s:.2f}" for b, s in zip(cpu["buddy"], cpu["sketch"], strict=True))
    print(f"== gateway app CPU per request, no HTTP server ({ROUNDS} rounds of {REQUESTS}, "
          f"{CONCURRENCY} in flight, load {os.getloadavg()[0]:.1f}) ==")  # fmt: skip
    for name, median in (("buddy", buddy_us), ("sketch", sketch_us)):
        rounds_us = ", ".join(f"{c * 1e6:.1f}" for c in cpu[name])
        print(f"{name:6s} {median:7.1f} us   (rounds: {rounds_us})")
    print(f"buddy - sketch: {buddy_us - sketch_us:.1f} us per request; buddy / sketch "
          f"{buddy_us / sketch_us:.2f} (per round: {rounds})")  # fmt: skip
    off_us = statistics.median(cpu["buddy_off"]) * 1e6
    print(
        f"usage recording: on {buddy_us:.1f} us, off {off_us:.1f} us per request -> "
        f"{100 * (buddy_us / off_us - 1):+.1f} % (target <= 5 %; per round: "
        f"{_changes(cpu['buddy'], cpu['buddy_off'])})"
    )
    s_on, s_off = (statistics.median(cpu[n]) * 1e6 for n in ("stream", "stream_off"))
    print(
        f"usage recording, streams of {bench.STREAM_CHUNKS} chunks: on {s_on:.2f} us, off "
        f"{s_off:.2f} us per chunk -> {100 * (s_on / s_off - 1):+.1f} % (per round: "
        f"{_changes(cpu['stream'], cpu['stream_off'])})"
    )


def _changes(on: list[float], off: list[float]) -> str:
    return ", ".join(f"{100 * (a / b - 1):+.1f}" for a, b in zip(on, off, strict=True))


if __name__ == "__main__":
    main()
