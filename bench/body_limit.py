"""What a large or deeply nested body costs a non-gateway endpoint (not a test).

Serves buddy under uvicorn (`buddy.asgi`, as the gateway service runs) from a source tree, sends
each body to `POST /api/v1/auth/token` a few times, and reports per request the client's wall time,
the server's CPU time (user+system, from /proc: the event loop's and its threads' work) and the
server's peak resident memory growth (VmHWM, a fresh server per body so peaks do not mix).

    .venv/bin/python bench/body_limit.py [SOURCE_TREE ...]

Each SOURCE_TREE (default: this repository) is served with this venv's packages; give an export of
another commit (`git archive <commit> | tar -x -C /tmp/before`) to compare before and after.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BODIES = {
    "2.5 MB JSON": b'{"username": "u", "password": "' + b"x" * 2_500_000 + b'"}',
    '"[" * 100_000': b"[" * 100_000,
}
REPEAT = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def measure(tree: Path, name: str, body: bytes, env: dict[str, str]) -> str:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "buddy.asgi:application", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        walls, cpus, statuses = [], [], set()
        peak_before = _peak_kib(server.pid)
        for _ in range(REPEAT):
            cpu0, wall0 = _cpu_seconds(server.pid), time.perf_counter()
            response = httpx.post(
                f"{url}/api/v1/auth/token",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=120,
            )
            walls.append(time.perf_counter() - wall0)
            cpus.append(_cpu_seconds(server.pid) - cpu0)
            statuses.add(f"{response.status_code} {response.json()['error']['code']}")
        growth = (_peak_kib(server.pid) - peak_before) / 1024
        return (
            f"{name:>15} | {'/'.join(sorted(statuses)):>22} | wall {min(walls) * 1000:7.1f} ms"
            f" (max {max(walls) * 1000:7.1f}) | server cpu {min(cpus) * 1000:6.0f} ms"
            f" | peak RSS +{growth:6.1f} MiB"
        )
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    trees = [Path(arg).resolve() for arg in sys.argv[1:]] or [ROOT]
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + "x" * 50,
            "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
            "SECURE_SSL_REDIRECT": "false",
            "BUDDY_PROVISIONER": "none",
            "LOG_LEVEL": "ERROR",
        }
        env.pop("REDIS_URL", None)  # the embedded default: no server needed
        for tree in trees:
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                cwd=tree, env=env, check=True,
            )  # fmt: skip
            print(f"# {tree} (min of {REPEAT} requests; peak RSS growth over all {REPEAT})")
            for name, body in BODIES.items():
                print(measure(tree, name, body, env), flush=True)


if __name__ == "__main__":
    main()
