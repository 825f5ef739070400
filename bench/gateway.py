"""Benchmark of the gateway (`make bench-gateway`), measured side by side in one run.

Servers side by side, each one uvicorn process (one worker) with uvloop and httptools when
installed:

- a mock model server that answers `POST .../v1/chat/completions` at once (a fixed completion, or
  a stream of `BENCH_STREAM_CHUNKS` chunks when asked);
- the *sketch*: a raw ASGI app, no framework, that does what a relay cannot avoid: one Redis GET,
  one HMAC compare, one POST through a pooled aiohttp session, relayed back (the limit of this
  design in Python, as issue 11 defines it); and the same sketch posting through buddy's own
  upstream client (`gateway.client`), so that what buddy's own work costs, the client being equal,
  is printed too;
- buddy (`buddy.asgi:application`) on PostgreSQL `BENCH_DATABASE_URL` and Redis `BENCH_REDIS_URL`,
  with a ready deployment whose endpoint is the mock, and its key's lookup cached; and the same
  buddy with usage recording off (`BUDDY_USAGE_RECORDING=false`), so that what recording costs
  (README "Usage": the in-process count per completion, the stream's usage chunk asked for, read
  and taken out) is measured side by side in the same run.

It prints, for `POST /v1/chat/completions` with a cached key: throughput under wrk (-c16,
`BENCH_PAIRS` interleaved rounds, medians), the added latency p50 of sequential requests (one
connection; the mock's own p50 subtracted), and the server's CPU per chunk of a
`BENCH_STREAM_CHUNKS`-chunk stream. With `BENCH_LITELLM` (the `litellm` command of a separate
virtualenv with `litellm[proxy]`, e.g. `python -m venv /tmp/litellm && /tmp/litellm/bin/pip install
'litellm[proxy]'`), LiteLLM's proxy is measured beside them: one worker, a master key, no
database, the same mock as its model (throughput and added latency).

Environment: BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/buddy_gw_bench),
BENCH_REDIS_URL (redis://127.0.0.1:6379/13), BENCH_DURATION (5 s per wrk run), BENCH_PAIRS (3),
BENCH_CONNECTIONS (16), BENCH_SEQUENTIAL (1000 requests, in 10 interleaved rounds),
BENCH_STREAMS (100), BENCH_STREAM_CHUNKS (200), BENCH_BUDDY_LOG_LEVEL (INFO), BENCH_LITELLM,
BENCH_PROFILE (a file for a py-spy profile of buddy under load), BENCH_PORT_RANGE ("19000-19199";
default any free port).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

# The lookup benchmark's helpers (this directory is on sys.path when run as bench/gateway.py).
import lookup
from lookup import _free_port, _ms

ROOT = Path(__file__).resolve().parents[1]
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/buddy_gw_bench"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
DURATION = int(os.environ.get("BENCH_DURATION", "5"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
SEQUENTIAL = int(os.environ.get("BENCH_SEQUENTIAL", "1000"))
LATENCY_ROUNDS = 10
STREAMS = int(os.environ.get("BENCH_STREAMS", "100"))
STREAM_CHUNKS = int(os.environ.get("BENCH_STREAM_CHUNKS", "200"))
# A file to write a py-spy profile of buddy under load to (collapsed stacks), if given.
PROFILE = os.environ.get("BENCH_PROFILE", "")
# LiteLLM's `litellm` command (its own virtualenv), to measure its proxy beside buddy; optional.
LITELLM = os.environ.get("BENCH_LITELLM", "")
LITELLM_KEY = "sk-bench-master-key"
MODEL = "gemma4:26b"
PEPPER = b"bench-sketch-pepper"
LOGS = Path(tempfile.mkdtemp(prefix="bench-gateway-logs-"))
SERVER_ENV = {
    **lookup.SERVER_ENV,
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
    # INFO (the default): buddy writes its access line for every request, as in production.
    "LOG_LEVEL": os.environ.get("BENCH_BUDDY_LOG_LEVEL", "INFO"),
}
CHAT = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello"}]})
STREAM_CHAT = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "stream": True}
)

# --- the two small servers (written to files, served by uvicorn) ------------------------------

MOCK_APP = r"""
import json, os
CHUNKS = int(os.environ["BENCH_STREAM_CHUNKS"])
COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "gemma4:26b",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}).encode()
USAGE_CHUNK = b"data: " + json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
    "model": "gemma4:26b", "choices": [],
    "usage": {"prompt_tokens": 3, "completion_tokens": CHUNKS, "total_tokens": 3 + CHUNKS},
}).encode() + b"\n\n"
CHUNK = b"data: " + json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
    "model": "gemma4:26b",
    "choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}],
}).encode() + b"\n\n"
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream")]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    if b'"stream": true' in raw or b'"stream":true' in raw:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        for _ in range(CHUNKS):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        if b'"include_usage": true' in raw:
            await send({"type": "http.response.body", "body": USAGE_CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": COMPLETION})
"""

SKETCH_APP = r"""
import hashlib, hmac, os
import aiohttp
import redis.asyncio as aioredis

PEPPER = os.environ["BENCH_PEPPER"].encode()
r = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
session = None
# BENCH_SKETCH_CLIENT=lean: the POST through buddy's own upstream client instead of aiohttp.
if os.environ.get("BENCH_SKETCH_CLIENT") == "lean":
    from gateway import client as lean
else:
    lean = None
LEAN_HEADERS = (("Content-Type", "application/json"),)
UNAUTHORIZED = b'{"error": {"message": "bad key", "type": "x", "code": "invalid_api_key"}}'

async def app(scope, receive, send):
    global session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if session is None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    auth = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            auth = value
    token = auth[7:].decode()
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    entry = await r.get("sketch:" + token[6:18])
    if entry is None:
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": UNAUTHORIZED})
        return
    digest, _, endpoint = entry.decode().partition("|")
    presented = hmac.new(PEPPER, token.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(digest, presented):
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": UNAUTHORIZED})
        return
    if lean is not None:
        target = lean.target(endpoint + "/v1/chat/completions", LEAN_HEADERS)
        upstream = await lean.pool().post(target, raw, connect_timeout=10, read_timeout=600)
        ctype = (upstream.headers.get("Content-Type") or "application/json").encode()
        await send({"type": "http.response.start", "status": upstream.status,
                    "headers": [(b"content-type", ctype)]})
        async for chunk in upstream.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    async with session.post(endpoint + "/v1/chat/completions", data=raw,
                            headers={"Content-Type": "application/json"}) as upstream:
        ctype = upstream.headers.get("Content-Type", "application/json").encode()
        await send({"type": "http.response.start", "status": upstream.status,
                    "headers": [(b"content-type", ctype)]})
        async for chunk in upstream.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
"""

WRK_POST = """
local body = os.getenv("BENCH_BODY")
local headers = {["Host"] = "127.0.0.1", ["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY"),
                 ["Content-Type"] = "application/json"}
local req = wrk.format("POST", "/v1/chat/completions", headers, body)
request = function() return req end
"""


def _uvicorn_extras() -> list[str]:
    extras = []
    try:
        import uvloop  # noqa: F401

        extras += ["--loop", "uvloop"]
    except ImportError:
        pass
    try:
        import httptools  # noqa: F401

        extras += ["--http", "httptools"]
    except ImportError:
        pass
    return extras


def start_uvicorn(app: str, port: int, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """The app under uvicorn; its log lines (buddy's access log at INFO included, as in
    production) go to a file beside the apps, read only if it fails to start."""
    log = open(LOGS / f"{app.split(':')[0]}.log", "ab")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)),
            *("--no-access-log", "--log-level", "warning", "--backlog", "2048"),
            *_uvicorn_extras(),
        ],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{app} did not start: {log.name}")
        time.sleep(0.1)


def start_litellm(port: int, mock_url: str, work: Path) -> subprocess.Popen:
    """LiteLLM's proxy, one worker, master key, no database, the mock as `MODEL`."""
    config = work / "litellm.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": f"openai/{MODEL}",
                            "api_base": f"{mock_url}/v1",
                            "api_key": "unused",
                        },
                    }
                ],
                "general_settings": {"master_key": LITELLM_KEY},
                "litellm_settings": {"set_verbose": False},
            }
        )
    )
    log = open(LOGS / "litellm.log", "ab")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [LITELLM, "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
         "--num_workers", "1"],
        cwd=work,
        # Not buddy's environment: with a DATABASE_URL, LiteLLM would want its own database.
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
             "LITELLM_LOG": "ERROR"},
        stdout=log,
        stderr=log,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while True:
        try:
            post(port, LITELLM_KEY, CHAT)
            return proc
        except (OSError, SystemExit, http.client.HTTPException):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"litellm did not start: {log.name}")
        time.sleep(0.5)


def ensure_database() -> None:
    import psycopg

    name = urlsplit(DATABASE_URL).path.lstrip("/")
    admin = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def create_key(endpoint_url: str) -> str:
    """A ready deployment at the mock and one key of it; returns the key's plaintext."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from deployments.models import Deployment, Template
    from keys import hashing, tokens
    from keys.models import ApiKey

    call_command("migrate", verbosity=0)
    template = Template.objects.get(slug="gemma4-26b")
    owner = get_user_model().objects.create_user("bench", password="bench-password-123")
    deployment = Deployment.objects.create(
        owner=owner,
        template=template,
        model_id=template.model_id,
        status="ready",
        endpoint_url=endpoint_url,
        pack_ends_at=timezone.now() + timedelta(hours=24),
    )
    generated = tokens.generate()
    ApiKey.objects.create(
        deployment=deployment,
        name="bench",
        public_id=generated.public_id,
        secret_hash=hashing.hash_key(generated.plaintext),
        is_default=False,
    )
    return generated.plaintext


def post(port: int, key: str, body: str, conn: http.client.HTTPConnection | None = None) -> bytes:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    content = response.read()
    if response.status != 200:
        raise SystemExit(f"port {port} answered {response.status}: {content[:300]!r}")
    if own:
        conn.close()
    return content


def run_wrk(port: int, script: str, env: dict[str, str]) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency", "-s", script]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
    }


def sequential_timings(port: int, key: str, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(10):
        post(port, key, CHAT, conn)
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        post(port, key, CHAT, conn)
        timings.append((time.perf_counter() - started) * 1000)
    conn.close()
    return timings


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream_cpu_per_chunk_us(proc: subprocess.Popen, port: int, key: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    first = post(port, key, STREAM_CHAT, conn)
    assert first.count(b"data: ") >= STREAM_CHUNKS, first[:200]
    before = cpu_seconds(proc.pid)
    for _ in range(STREAMS):
        post(port, key, STREAM_CHAT, conn)
    conn.close()
    return (cpu_seconds(proc.pid) - before) / (STREAMS * STREAM_CHUNKS) * 1e6


def main() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk (make bench-gateway does it)")
    started = time.monotonic()
    ensure_database()
    os.environ.update(SERVER_ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import hashlib
    import hmac

    import redis

    r = redis.Redis.from_url(REDIS_URL)
    for name in r.scan_iter("buddy:lookup:*", count=1000):
        r.delete(name)

    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    (work / "bench_mock.py").write_text(MOCK_APP)
    (work / "bench_sketch.py").write_text(SKETCH_APP)
    script = work / "post.lua"
    script.write_text(WRK_POST)
    mock_port, sketch_port, buddy_port = _free_port(), 0, 0
    procs: dict[str, subprocess.Popen] = {}
    try:
        extra = {"BENCH_STREAM_CHUNKS": str(STREAM_CHUNKS)}
        procs["mock"] = start_uvicorn("bench_mock:app", mock_port, extra, work)
        mock_url = f"http://127.0.0.1:{mock_port}"
        key = create_key(mock_url)
        r.set(
            f"sketch:{key[6:18]}",
            hmac.new(PEPPER, key.encode(), hashlib.sha256).hexdigest() + "|" + mock_url,
        )
        sketch_port = _free_port()
        procs["sketch"] = start_uvicorn(
            "bench_sketch:app",
            sketch_port,
            {"BENCH_PEPPER": PEPPER.decode(), "BENCH_REDIS_URL": REDIS_URL},
            work,
        )
        lean_port = _free_port()
        procs["sketch_lean"] = start_uvicorn(
            "bench_sketch:app",
            lean_port,
            {"BENCH_PEPPER": PEPPER.decode(), "BENCH_REDIS_URL": REDIS_URL,
             "BENCH_SKETCH_CLIENT": "lean", "PYTHONPATH": str(ROOT)},
            work,
        )  # fmt: skip
        buddy_port = _free_port()
        procs["buddy"] = start_uvicorn("buddy.asgi:application", buddy_port, SERVER_ENV, ROOT)
        off_port = _free_port()
        procs["buddy_off"] = start_uvicorn(
            "buddy.asgi:application",
            off_port,
            {**SERVER_ENV, "BUDDY_USAGE_RECORDING": "false"},
            ROOT,
        )
        ports = {"mock": mock_port, "sketch": sketch_port, "sketch_lean": lean_port,
                 "buddy": buddy_port, "buddy_off": off_port}  # fmt: skip
        keys = dict.fromkeys(ports, key)
        if LITELLM:
            ports["litellm"] = _free_port()
            procs["litellm"] = start_litellm(ports["litellm"], mock_url, work)
            keys["litellm"] = LITELLM_KEY
        for name in [name for name in ports if name != "mock"]:
            answer = json.loads(post(ports[name], keys[name], CHAT))  # cached from here on
            assert answer["choices"][0]["message"]["content"] == "hi there", answer

        env = {"BENCH_BODY": CHAT}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
        print(f"bench: {PAIRS} interleaved rounds of wrk -t2 -c{CONNECTIONS} -d{DURATION}s")
        for _ in range(PAIRS):
            for name, port in ports.items():
                cpu_before = cpu_seconds(procs[name].pid)
                run = run_wrk(port, str(script), {**env, "BENCH_KEY": keys[name]})
                # CPU the server spent per request: unlike req/s, hardly moved by whatever else
                # the machine is running at the same time.
                run["cpu_us"] = (cpu_seconds(procs[name].pid) - cpu_before) / run["requests"] * 1e6
                runs[name].append(run)
        if PROFILE:  # one more run of buddy under py-spy: collapsed stacks to PROFILE
            spy = subprocess.Popen(
                ["py-spy", "record", "-p", str(procs["buddy"].pid), "-d", str(DURATION),
                 "-f", "raw", "-o", PROFILE, "-r", "250"],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            run_wrk(buddy_port, str(script), {**env, "BENCH_KEY": key})
            spy.wait(60)
        # Sequential requests, interleaved in rounds so that all three see the same machine.
        timings: dict[str, list[float]] = {name: [] for name in ports}
        for _ in range(LATENCY_ROUNDS):
            for name, port in ports.items():
                timings[name] += sequential_timings(port, keys[name], SEQUENTIAL // LATENCY_ROUNDS)
        latency = {name: statistics.median(timings[name]) for name in ports}
        stream_cpu = {
            name: stream_cpu_per_chunk_us(procs[name], ports[name], key)
            for name in ("sketch", "buddy", "buddy_off")
        }
        # And once more, the other way round, to see the noise of the shared machine.
        for name in ("buddy_off", "buddy", "sketch"):
            stream_cpu[name] = min(
                stream_cpu[name], stream_cpu_per_chunk_us(procs[name], ports[name], key)
            )
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(15)
        shutil.rmtree(work, ignore_errors=True)

    rps = {name: statistics.median(run["rps"] for run in runs[name]) for name in runs}
    bad = {name: sum(run["non2xx"] for run in runs[name]) for name in runs}
    added = {name: latency[name] - latency["mock"] for name in ports if name != "mock"}
    print()
    print(f"== gateway benchmark ({os.cpu_count()} cores, one uvicorn worker each "
          f"{' '.join(_uvicorn_extras())}, load {os.getloadavg()[0]:.1f}) ==")  # fmt: skip
    print(f"{'POST /v1/chat/completions':34}{'req/s':>9}{'non-2xx':>9}{'p50 ms':>9}{'added':>9}")
    labels = {
        "mock": "mock model server, direct",
        "sketch": "raw-ASGI sketch (aiohttp, 1 GET)",
        "sketch_lean": "the sketch with buddy's client",
        "buddy": "buddy's gateway",
        "buddy_off": "buddy, usage recording off",
        "litellm": "LiteLLM proxy (1 worker, no DB)",
    }
    for name in ports:
        extra_ms = f"{added[name]:9.2f}" if name in added else f"{'-':>9}"
        print(f"{labels[name]:34}{rps[name]:9.0f}{bad[name]:9.0f}{latency[name]:9.2f}{extra_ms}")
    for name in ports:
        print(f"  {name} runs (req/s): " + ", ".join(f"{run['rps']:.0f}" for run in runs[name]))
    print(
        f"throughput buddy / sketch: {rps['buddy'] / rps['sketch']:.2f}  (target >= 0.80); "
        f"per round: "
        + ", ".join(
            f"{b['rps'] / s['rps']:.2f}" for b, s in zip(runs["buddy"], runs["sketch"], strict=True)
        )
    )
    cpu = {name: statistics.median(run["cpu_us"] for run in runs[name]) for name in runs}
    print(
        f"throughput buddy / sketch with buddy's upstream client: "
        f"{rps['buddy'] / rps['sketch_lean']:.2f}; server CPU per request {cpu['buddy']:.0f} us "
        f"vs {cpu['sketch_lean']:.0f} us -> capacity ratio {cpu['sketch_lean'] / cpu['buddy']:.2f}"
        f" (what buddy's own work costs, the client being equal)"
    )
    print(
        f"server CPU per request under wrk (median): buddy {cpu['buddy']:.0f} us, sketch "
        f"{cpu['sketch']:.0f} us -> capacity ratio {cpu['sketch'] / cpu['buddy']:.2f} (mock "
        f"{cpu['mock']:.0f} us; Redis' own CPU not included)"
    )
    print(
        f"added latency p50 buddy / sketch: {added['buddy'] / max(added['sketch'], 1e-3):.2f}"
        f"  ({added['buddy']:.2f} ms vs {added['sketch']:.2f} ms; target <= 1.5)"
    )
    print(
        f"stream of {STREAM_CHUNKS} chunks, server CPU per chunk: "
        f"buddy {stream_cpu['buddy']:.1f} us,"
        f" sketch {stream_cpu['sketch']:.1f} us -> ratio "
        f"{stream_cpu['buddy'] / max(stream_cpu['sketch'], 1e-3):.2f}  (target <= 1.5)"
    )
    on, off = runs["buddy"], runs["buddy_off"]
    print(
        f"usage recording: throughput on / off {rps['buddy'] / rps['buddy_off']:.3f} (per round: "
        + ", ".join(f"{a['rps'] / b['rps']:.3f}" for a, b in zip(on, off, strict=True))
        + f"); server CPU per request on {cpu['buddy']:.0f} us, off {cpu['buddy_off']:.0f} us "
        f"-> recording costs {100 * (cpu['buddy'] / cpu['buddy_off'] - 1):+.1f} % "
        f"(target <= 5 %); stream CPU per chunk on {stream_cpu['buddy']:.1f} us, off "
        f"{stream_cpu['buddy_off']:.1f} us -> "
        f"{100 * (stream_cpu['buddy'] / stream_cpu['buddy_off'] - 1):+.1f} %"
    )
    if "litellm" in rps:
        print(
            f"throughput buddy / LiteLLM: {rps['buddy'] / rps['litellm']:.2f}  (target >= 5); "
            f"server CPU per request: LiteLLM {cpu['litellm']:.0f} us -> capacity ratio "
            f"{cpu['litellm'] / cpu['buddy']:.2f}; added latency p50 {added['litellm']:.2f} ms"
        )
    print(f"(whole run {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
