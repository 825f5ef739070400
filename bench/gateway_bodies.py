"""Time and memory of awkward bodies at the gateway (issue 13, item 5), for one tree of buddy.

    python bench/gateway_bodies.py [ROOT]   (ROOT: a checkout of buddy; default this one)

Starts the mock model server and buddy under uvicorn (as `bench/gateway.py` does, same database
and Redis settings) and sends, 5 times each: a 2.5 MB chat body and `"[" * 100_000`, with and
without a valid key. Prints the status, the server's CPU per request (from /proc), the best wall
time and how much the server's peak RSS grew (VmHWM: growth beyond its earlier peak only).
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE.parent
# bench/gateway.py under another name: `gateway` is the app's package.
_spec = importlib.util.spec_from_file_location("bench_gateway", HERE / "gateway.py")
assert _spec is not None and _spec.loader is not None
g = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(g)


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def main() -> None:
    os.environ["PYTHONPATH"] = str(ROOT)
    g.ensure_database()
    os.environ.update(g.SERVER_ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    work = Path(tempfile.mkdtemp(prefix="bench-bodies-"))
    (work / "bench_mock.py").write_text(g.MOCK_APP)
    mock_port = g._free_port()
    mock = g.start_uvicorn("bench_mock:app", mock_port, {"BENCH_STREAM_CHUNKS": "2"}, work)
    key = g.create_key(f"http://127.0.0.1:{mock_port}")
    port = g._free_port()
    buddy = g.start_uvicorn("buddy.asgi:application", port, dict(g.SERVER_ENV), ROOT)

    def send(body: bytes | str, auth: bool) -> tuple[int, bytes, float]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {key}"
        started = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        response = conn.getresponse()
        content = response.read()
        conn.close()
        return response.status, content[:60], time.perf_counter() - started

    try:
        send(g.CHAT, True)
        big = json.dumps(
            {"model": g.MODEL, "messages": [{"role": "user", "content": "w " * 1_250_000}]}
        )
        deep = "[" * 100_000
        cases = (
            ("2.5 MB body, valid key", big, True),
            ("[ x 100000, valid key", deep, True),
            ("[ x 100000, no key", deep, False),
            ("2.5 MB body, no key", big, False),
        )
        for label, body, auth in cases:
            peak, cpu = rss_kb(buddy.pid, "VmHWM"), g.cpu_seconds(buddy.pid)
            walls = []
            for _ in range(5):
                status, head, wall = send(body, auth)
                walls.append(wall)
            per_request = (g.cpu_seconds(buddy.pid) - cpu) / 5 * 1000
            grew = (rss_kb(buddy.pid, "VmHWM") - peak) / 1024
            print(
                f"{label:24} {status} {head!r}: server CPU {per_request:.0f} ms/request, wall "
                f"{min(walls) * 1000:.0f} ms (best of 5), peak RSS +{grew:.1f} MB"
            )
    finally:
        for proc in (buddy, mock):
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()
