"""Benchmark of the proxy auth lookup (`make bench`), measured side by side in one run.

It starts the web server as deployed (gunicorn, several sync workers) against PostgreSQL (database
`buddy_bench`, recreated) and Redis (database 12 by default), creates a few thousand keys over many
deployments, and drives load with wrk from a separate process. It prints:

- requests/s and p50/p99 latency of cached lookups and of `/healthz` on the same server, and the
  ratio of their throughputs;
- the same cached lookups of keys that have limits (`rate_limit_rpm` and `rate_limit_tpm`, set
  high enough never to refuse: every request is counted in Redis by the read script), and their
  throughput and CPU per request against keys without limits (target: within 10 %);
- the cost of an uncached lookup (one argon2 verification, in-process and over HTTP) and the
  argon2 parameters;
- the time from a revoke's commit to the first 401 seen by a concurrent prober process.

Beside it, on another gunicorn with as many workers (`bench/lookup_peers.py`), the same lookups
are served by a plain Django view with no middleware doing one Redis GET and one HMAC (the limit
sketch), and by djangorestframework-api-key's `HasAPIKey` (the peer): requests/s, CPU per request
and the ratios of buddy's cached lookup to each, round by round.

Environment: BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_WORKERS (4), BENCH_DEPLOYMENTS (200),
BENCH_KEYS_PER_DEPLOYMENT (10), BENCH_DURATION (6 s per wrk run), BENCH_PAIRS (5 interleaved
healthz/lookup pairs), BENCH_CONNECTIONS (32), BENCH_REVOKES (20), BENCH_LIMITED_KEYS (1000),
BENCH_PORT_RANGE (e.g.
"18500-18599"; default: any free port).
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/buddy_bench"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
# gunicorn's own advice: (2 x cores) + 1 sync workers.
WORKERS = int(os.environ.get("BENCH_WORKERS", str(2 * (os.cpu_count() or 2) + 1)))
DEPLOYMENTS = int(os.environ.get("BENCH_DEPLOYMENTS", "200"))
KEYS_PER_DEPLOYMENT = int(os.environ.get("BENCH_KEYS_PER_DEPLOYMENT", "10"))
DURATION = int(os.environ.get("BENCH_DURATION", "6"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "7"))
# A range of ports the server may use ("18500-18599"); without it the OS picks a free one.
PORT_RANGE = os.environ.get("BENCH_PORT_RANGE", "")
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
REVOKES = int(os.environ.get("BENCH_REVOKES", "20"))
# Keys with limits (spread over the same deployments), for the "limits" case.
LIMITED_KEYS = int(os.environ.get("BENCH_LIMITED_KEYS", "1000"))
SERVER_ENV = {
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
    "SECRET_KEY": "bench-secret-key-not-for-production",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "127.0.0.1",
    "BUDDY_PROVISIONER": "none",
    "LOG_LEVEL": "WARNING",
    "DJANGO_SETTINGS_MODULE": "buddy.settings",
}

# Both runs are driven the same way: requests formatted once at start-up, then handed out by a
# trivial request() (so the generator costs the same per request for both endpoints).
WRK_LOOKUP = """
local requests = {}
local headers = {
  ["Authorization"] = "Bearer " .. os.getenv("BENCH_SERVICE_TOKEN"),
  ["Content-Type"] = "application/json",
}
for line in io.lines(os.getenv("BENCH_KEYS_FILE")) do
  requests[#requests + 1] = wrk.format("POST", os.getenv("BENCH_PATH"), headers,
    '{"authorization":"Bearer ' .. line .. '","model":"gemma4:26b"}')
end
local i = math.random(#requests)
request = function()
  i = i % #requests + 1
  return requests[i]
end
"""
# djangorestframework-api-key's peer: its own key in the header, the same body.
WRK_DRF = """
local requests = {}
for line in io.lines(os.getenv("BENCH_DRF_KEYS_FILE")) do
  local headers = {["Authorization"] = "Api-Key " .. line, ["Content-Type"] = "application/json"}
  requests[#requests + 1] = wrk.format("POST", "/drf", headers, '{"model":"gemma4:26b"}')
end
local i = math.random(#requests)
request = function()
  i = i % #requests + 1
  return requests[i]
end
"""
WRK_HEALTHZ = """
local requests = {}
for n = 1, 100 do requests[n] = wrk.format("GET", "/healthz") end
local i = 0
request = function()
  i = i % #requests + 1
  return requests[i]
end
"""


def _hash_one(plaintext: str) -> str:
    from keys import hashing

    return hashing.hash_key(plaintext)


def _init_django() -> None:
    os.environ.update(SERVER_ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _free_port() -> int:
    low, _, high = PORT_RANGE.partition("-")
    candidates = range(int(low), int(high or low) + 1) if low else [0]
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise SystemExit(f"no free port in {PORT_RANGE}")


def ensure_database() -> None:
    import psycopg

    parts = urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    admin = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def clear_redis() -> None:
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    for name in r.scan_iter("buddy:lookup:*", count=1000):
        r.delete(name)


def create_data() -> tuple[str, list[str], list[str], list[str]]:
    """A proxy service token, plaintexts of keys over many ready deployments (and their ids), and
    plaintexts of keys with limits over the same deployments."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from buddy.accounts.services import service_token_create
    from deployments.models import Deployment, Template
    from keys import tokens
    from keys.models import ApiKey

    call_command("migrate", verbosity=0)
    template = Template.objects.get(slug="gemma4-26b")
    owner = get_user_model().objects.create_user("bench", password="bench-password-123")
    deployments = Deployment.objects.bulk_create(
        Deployment(
            owner=owner,
            template=template,
            model_id=template.model_id,
            status="ready",
            endpoint_url=f"http://10.0.{i // 250}.{i % 250}:8000",
            pack_ends_at=timezone.now() + timedelta(hours=24),
        )
        for i in range(DEPLOYMENTS)
    )
    count = DEPLOYMENTS * KEYS_PER_DEPLOYMENT
    generated = [tokens.generate() for _ in range(count + LIMITED_KEYS)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        hashes = list(pool.map(_hash_one, [g.plaintext for g in generated], chunksize=50))
    keys = ApiKey.objects.bulk_create(
        ApiKey(
            deployment=deployments[i % DEPLOYMENTS],
            name=f"bench-{i}",
            public_id=g.public_id,
            secret_hash=h,
            is_default=False,
            # High enough never to refuse in a run: every lookup is counted, none is refused.
            rate_limit_rpm=100_000 if i >= count else None,
            rate_limit_tpm=2_000_000_000 if i >= count else None,
        )
        for i, (g, h) in enumerate(zip(generated, hashes, strict=True))
    )
    _token, secret = service_token_create(name="bench-proxy", role="proxy")
    plaintexts = [g.plaintext for g in generated]
    return secret, plaintexts[:count], [str(k.pk) for k in keys[:count]], plaintexts[count:]


def start_server(
    port: int, app: str = "buddy.wsgi", env: dict[str, str] | None = None, probe: str = "/healthz"
) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", app),
            *("--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}"),
            *("--log-level", "warning", "--backlog", "2048"),
        ],
        cwd=ROOT if app == "buddy.wsgi" else ROOT / "bench",
        env={**os.environ, **SERVER_ENV, **(env or {})},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", probe)
            if conn.getresponse().status in (200, 405):
                return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"gunicorn {app} did not start")
        time.sleep(0.1)


PEER_PEPPER = "bench-peer-pepper"


def start_peers(port: int, token: str, plaintexts: list[str]) -> tuple[subprocess.Popen, str]:
    """The plain-view sketch and djangorestframework-api-key (bench/lookup_peers.py): their
    Redis entries (the plain view's: HMAC and answer per key) and keys, then their server."""
    import hashlib
    import hmac

    import redis

    r = redis.Redis.from_url(REDIS_URL)
    answer = json.dumps({"deployment_id": "d", "model": "gemma4:26b", "endpoint_url": "u"})
    with r.pipeline(transaction=False) as pipe:
        for plaintext in plaintexts:
            digest = hmac.new(PEER_PEPPER.encode(), plaintext.encode(), hashlib.sha256).hexdigest()
            pipe.set(f"peer:{plaintext[6:18]}", f"{digest}|{answer}")
        pipe.execute()
    env = {"BENCH_SERVICE_TOKEN": token, "BENCH_PEPPER": PEER_PEPPER}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    peer_env = {**os.environ, **SERVER_ENV, **env, "DJANGO_SETTINGS_MODULE": "lookup_peers"}
    drf_keys = subprocess.run(
        [sys.executable, "lookup_peers.py", "setup", str(len(plaintexts) // 4 or 1)],
        cwd=ROOT / "bench",
        env=peer_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    keys_file = tempfile.NamedTemporaryFile("w", prefix="bench-drf-", delete=False)  # noqa: SIM115
    keys_file.write("\n".join(drf_keys) + "\n")
    keys_file.close()
    proc = start_server(
        port,
        "lookup_peers:application",
        {**env, "DJANGO_SETTINGS_MODULE": "lookup_peers"},
        probe="/plain",
    )
    return proc, keys_file.name


def post_lookup(port: int, token: str, plaintext: str) -> tuple[int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"authorization": f"Bearer {plaintext}", "model": "gemma4:26b"})
    started = time.perf_counter()
    conn.request(
        "POST",
        "/internal/v1/auth/lookup",
        body=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return response.status, elapsed


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(url: str, script: str | None, env: dict[str, str]) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency", "--timeout", "5s"]
    if script:
        command += ["-s", script]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, env={**os.environ, **env}, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "requests": requests,
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": errors.group(0) if errors else "",  # type: ignore[dict-item]
    }


def server_cpu_seconds(server: subprocess.Popen) -> float:
    """CPU time (user + system) the gunicorn workers have used so far."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    ticks = 0
    for pid in children:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def prober(port: int, token: str, commands, events) -> None:  # type: ignore[no-untyped-def]
    """Look up the current key from two connections; report the first 401 of each round."""
    import threading

    current: dict[str, object] = {"key": None, "round": -1, "stop": False}
    reported: set[int] = set()
    lock = threading.Lock()

    def loop() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        while not current["stop"]:
            key, rnd = current["key"], current["round"]
            if key is None:
                time.sleep(0.001)
                continue
            conn.request(
                "POST",
                "/internal/v1/auth/lookup",
                body=json.dumps({"authorization": f"Bearer {key}"}),
                headers=headers,
            )
            response = conn.getresponse()
            response.read()
            if response.status == 401:
                with lock:
                    if rnd not in reported:
                        reported.add(rnd)
                        events.put((rnd, time.monotonic()))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    while True:
        command = commands.get()
        if command is None:
            current["stop"] = True
            break
        current["round"], current["key"] = command
    for t in threads:
        t.join(10)


def revoke_to_401(port: int, token: str, plaintexts: list[str], key_ids: list[str]) -> list[float]:
    from keys import services

    ctx = multiprocessing.get_context("spawn")
    commands, events = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=prober, args=(port, token, commands, events), daemon=True)
    proc.start()
    delays = []
    try:
        for rnd in range(REVOKES):
            plaintext, key_id = plaintexts[-1 - rnd], key_ids[-1 - rnd]
            assert post_lookup(port, token, plaintext)[0] == 200  # cached and live
            commands.put((rnd, plaintext))
            time.sleep(0.05)  # let the prober hammer the live key for a moment
            services.key_revoke(key_id=key_id, actor="bench")
            committed = time.monotonic()
            got_round, first_401 = events.get(timeout=10)
            assert got_round == rnd
            delays.append((first_401 - committed) * 1000)
    finally:
        commands.put(None)
        proc.join(10)
    return delays


def argon2_cost() -> tuple[list[float], dict[str, int]]:
    from django.conf import settings

    from keys import hashing, tokens

    plaintext = tokens.generate().plaintext
    stored = hashing.hash_key(plaintext)
    timings = []
    for _ in range(30):
        started = time.perf_counter()
        assert hashing.verify_key(stored, plaintext)
        timings.append((time.perf_counter() - started) * 1000)
    params = {
        "time_cost": settings.BUDDY_ARGON2_TIME_COST,
        "memory_cost_kib": settings.BUDDY_ARGON2_MEMORY_COST,
        "parallelism": settings.BUDDY_ARGON2_PARALLELISM,
    }
    return timings, params


def main() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk (make bench does it)")
    started = time.monotonic()
    ensure_database()
    _init_django()
    clear_redis()
    count = DEPLOYMENTS * KEYS_PER_DEPLOYMENT
    print(f"bench: creating {count} keys over {DEPLOYMENTS} deployments")
    token, plaintexts, key_ids, limited = create_data()
    port = _free_port()
    server = start_server(port)
    peer_port = _free_port()
    peers, drf_keys_file = start_peers(peer_port, token, plaintexts[: -REVOKES or None])
    keys_file = tempfile.NamedTemporaryFile("w", prefix="bench-keys-", delete=False)  # noqa: SIM115
    try:
        os.chmod(keys_file.name, 0o600)
        bench_keys = plaintexts[: -REVOKES or None]
        keys_file.write("\n".join(bench_keys) + "\n")
        keys_file.close()
        limited_file = tempfile.NamedTemporaryFile("w", prefix="bench-lim-", delete=False)  # noqa: SIM115
        os.chmod(limited_file.name, 0o600)
        limited_file.write("\n".join(limited) + "\n")
        limited_file.close()
        print(f"bench: gunicorn with {WORKERS} sync workers on 127.0.0.1:{port}; warming the cache")
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            warm = list(pool.map(lambda p: post_lookup(port, token, p), plaintexts + limited))
        assert all(status == 200 for status, _ in warm), "a warm-up lookup was not 200"

        # Uncached over HTTP: a key whose entry is dropped costs one argon2 verify again.
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        uncached = []
        for plaintext in plaintexts[:30]:
            r.delete(f"buddy:lookup:e:{plaintext[6:18]}")
            status, elapsed = post_lookup(port, token, plaintext)
            assert status == 200
            uncached.append(elapsed * 1000)
        cached = [post_lookup(port, token, p)[1] * 1000 for p in plaintexts[:30]]

        scripts = {}
        for name, text in (
            ("healthz", WRK_HEALTHZ),
            ("lookup", WRK_LOOKUP),
            ("limits", WRK_LOOKUP),
            ("plain", WRK_LOOKUP),
            ("drf", WRK_DRF),
        ):
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
                script.write(text)
            scripts[name] = script.name
        env = {
            "BENCH_KEYS_FILE": keys_file.name,
            "BENCH_SERVICE_TOKEN": token,
            "BENCH_DRF_KEYS_FILE": drf_keys_file,
        }
        lookup_path = "/internal/v1/auth/lookup"
        paths = {"lookup": lookup_path, "limits": lookup_path, "plain": "/plain"}
        keys_files = {"limits": limited_file.name}
        servers = {"healthz": server, "lookup": server, "limits": server}
        servers |= {"plain": peers, "drf": peers}
        ports = {"healthz": port, "lookup": port, "limits": port, "plain": peer_port}
        ports["drf"] = peer_port
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in scripts}
        print(f"bench: {PAIRS} interleaved rounds of {DURATION} s wrk runs")
        for _ in range(PAIRS):  # interleaved, so that all see the same machine
            for name in scripts:
                cpu_before = server_cpu_seconds(servers[name])
                run = run_wrk(
                    f"http://127.0.0.1:{ports[name]}",
                    scripts[name],
                    {
                        **env,
                        "BENCH_PATH": paths.get(name, ""),
                        "BENCH_KEYS_FILE": keys_files.get(name, keys_file.name),
                    },
                )
                # CPU the workers spent per request: unlike req/s, hardly moved by whatever else
                # the machine is running at the same time.
                run["cpu_us"] = (server_cpu_seconds(servers[name]) - cpu_before) / run["requests"]
                run["cpu_us"] *= 1e6
                runs[name].append(run)
        for path in scripts.values():
            os.unlink(path)

        delays = revoke_to_401(port, token, plaintexts, key_ids)
        verify_ms, params = argon2_cost()
    finally:
        for proc in (server, peers):
            proc.terminate()
            proc.wait(15)
        os.unlink(keys_file.name)
        os.unlink(drf_keys_file)
        os.unlink(limited_file.name)

    def summary(name: str) -> tuple[float, float, float, float]:
        rps = statistics.median(run["rps"] for run in runs[name])
        p50 = statistics.median(run["p50"] for run in runs[name])
        p99 = statistics.median(run["p99"] for run in runs[name])
        return rps, p50, p99, sum(run["non2xx"] for run in runs[name])

    h_rps, h_p50, h_p99, h_bad = summary("healthz")
    l_rps, l_p50, l_p99, l_bad = summary("lookup")
    print()
    print(f"== proxy lookup benchmark ({os.cpu_count()} cores, gunicorn {WORKERS} sync workers,")
    print(f"   wrk -t2 -c{CONNECTIONS} -d{DURATION}s, {PAIRS} interleaved pairs, medians;")
    print(f"   load {os.getloadavg()[0]:.1f}, wrk and Redis and PostgreSQL on the same machine) ==")
    print(f"{'':22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    print(f"{'GET /healthz':22}{h_rps:10.0f}{h_p50:10.2f}{h_p99:10.2f}{h_bad:10.0f}")
    print(f"{'cached lookup':22}{l_rps:10.0f}{l_p50:10.2f}{l_p99:10.2f}{l_bad:10.0f}")
    m_rps, m_p50, m_p99, m_bad = summary("limits")
    print(f"{'  ... key with limits':22}{m_rps:10.0f}{m_p50:10.2f}{m_p99:10.2f}{m_bad:10.0f}")
    p_rps, p_p50, p_p99, p_bad = summary("plain")
    d_rps, d_p50, d_p99, d_bad = summary("drf")
    print(f"{'plain-view sketch':22}{p_rps:10.0f}{p_p50:10.2f}{p_p99:10.2f}{p_bad:10.0f}")
    print(f"{'drf-api-key HasAPIKey':22}{d_rps:10.0f}{d_p50:10.2f}{d_p99:10.2f}{d_bad:10.0f}")
    for name in runs:
        print(f"  {name} runs (req/s): " + ", ".join(f"{run['rps']:.0f}" for run in runs[name]))
    cpu = {name: statistics.median(run["cpu_us"] for run in runs[name]) for name in runs}
    for peer, target in (("plain", 0.9), ("drf", 2.3)):
        pairs = zip(runs["lookup"], runs[peer], strict=True)
        per_round = [mine["rps"] / theirs["rps"] for mine, theirs in pairs]
        print(
            f"cached lookup / {peer}: throughput {statistics.median(per_round):.2f} (median of "
            f"rounds: " + ", ".join(f"{ratio:.2f}" for ratio in per_round) + "), CPU per request "
            f"{cpu['lookup']:.0f} us vs {cpu[peer]:.0f} us -> capacity ratio "
            f"{cpu[peer] / cpu['lookup']:.2f}  (target >= {target})"
        )
    limit_ratios = [
        limits["rps"] / plain["rps"]
        for plain, limits in zip(runs["lookup"], runs["limits"], strict=True)
    ]
    print(
        f"cached lookup with limits / without: throughput {statistics.median(limit_ratios):.2f}"
        f" (median of rounds: " + ", ".join(f"{ratio:.2f}" for ratio in limit_ratios) + "), "
        f"CPU per request {cpu['limits']:.0f} us vs {cpu['lookup']:.0f} us -> capacity ratio "
        f"{cpu['lookup'] / cpu['limits']:.2f}  (target >= 0.90)"
    )
    h_cpu = statistics.median(run["cpu_us"] for run in runs["healthz"])
    l_cpu = statistics.median(run["cpu_us"] for run in runs["lookup"])
    print(
        f"gunicorn worker CPU per request (median): healthz {h_cpu:.0f} us, cached lookup "
        f"{l_cpu:.0f} us -> capacity ratio {h_cpu / l_cpu:.2f} (Redis' own CPU not included)"
    )
    pair_ratios = [
        lookup["rps"] / healthz["rps"]
        for healthz, lookup in zip(runs["healthz"], runs["lookup"], strict=True)
    ]
    print(
        f"ratio cached lookup / healthz throughput: {l_rps / h_rps:.2f} (of medians); per pair: "
        + ", ".join(f"{ratio:.2f}" for ratio in pair_ratios)
        + f"; median {statistics.median(pair_ratios):.2f}  (target >= 0.80)"
    )
    print(
        f"uncached lookup (one argon2 verify) over HTTP: median {statistics.median(uncached):.1f}"
        f" ms (cached, same keys, one at a time: {statistics.median(cached):.1f} ms)"
    )
    print(
        f"argon2id verify in-process: median {statistics.median(verify_ms):.1f} ms, "
        f"p90 {sorted(verify_ms)[int(len(verify_ms) * 0.9)]:.1f} ms; parameters {params}"
    )
    print(
        f"revoke commit -> first 401 seen by a concurrent prober ({REVOKES} revokes): "
        f"median {statistics.median(delays):.2f} ms, max {max(delays):.2f} ms"
    )
    print(f"(whole run {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
