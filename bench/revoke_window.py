"""The window from a revoke's (or a stop's) commit to the first refusal, seen by lookups running in
other processes (the proxy fleet's stand-ins), and what they answered meanwhile.

    PG_URL=postgres://... TEST_REDIS_URL=redis://... .venv/bin/python bench/revoke_window.py
    .venv/bin/python bench/revoke_window.py --rounds 50 --processes 2

Each round creates a key on a ready deployment and has `--processes` lookup processes hammer it
with `key_lookup` (cache, guards, argon2 and PostgreSQL exactly as the internal API and the gateway
run them) until every one has had a 200 from the cache. Then this process revokes the key
(`key_revoke`) or stops its deployment (`deployment_stop`, which revokes its keys in its own
transaction), and takes the time of the commit from an on-commit hook. Each lookup records when it
was sent and answered, and what. Reported per kind of change:

- window: from the commit to the first refusal answered to a lookup sent after it (ms);
- late 200s: lookups *sent after the commit* that answered 200 (the contract says none);
- 409s: lookups sent after a stop's commit that answered 409 (v2 says 401 from the commit on).

`--script-cost` measures instead what the epoch check costs Redis: the read script of v1 (no
epoch) and the current one (`keys.lookup.cache._READ`, `INFO server` inside), side by side on a
private `redis-server` started for it, as Redis's own CPU time per call (`INFO commandstats`).

It uses its own database (`<PG_URL database>_revoke_bench`, created and migrated on first use) and
database 13 of the Redis server of TEST_REDIS_URL (or REDIS_URL) for the lookup cache.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.expiry_sweep import configure  # noqa: E402 - after the path that finds it


def _prober(commands: Any, events: Any) -> None:
    """A lookup process: hammers the current target until told to stop, then reports."""
    import django

    django.setup()
    from keys.lookup.selectors import key_lookup

    target: tuple[int, str] | None = None
    records: list[tuple[int, float, float, int]] = []
    seen_ok: set[int] = set()
    while True:
        while not commands.empty() or target is None:
            command = commands.get()
            if command[0] == "stop":
                events.put(("records", records))
                return
            target = (command[1], command[2])
        idx, plaintext = target
        t_send = time.monotonic()
        status = key_lookup(authorization=f"Bearer {plaintext}").outcome.status
        t_recv = time.monotonic()
        records.append((idx, t_send, t_recv, status))
        if status == 200 and idx not in seen_ok:
            seen_ok.add(idx)
            events.put(("ok", idx))


# The read script of v1 (before the epoch), for `--script-cost` only.
_READ_V1 = """
local e = redis.call('GET', KEYS[1])
local kt = redis.call('EXISTS', KEYS[2])
if not e then return {false, kt, 0, false} end
local dep = string.match(e, '^([^|]*)|')
if not dep or dep == '' then return {e, kt, 0, false} end
return {e, kt, redis.call('EXISTS', ARGV[1] .. 'tomb:d:' .. dep),
        redis.call('GET', ARGV[1] .. 'gen:d:' .. dep)}
"""


def script_cost(calls: int = 20000, repeats: int = 3) -> None:
    """Redis CPU per hit of the v1 read script and the current one, alternately on one server."""
    import socket
    import subprocess
    import tempfile

    import redis

    from keys.lookup import cache

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            r = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    r.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            run_id = r.info("server")["run_id"]
            dep = "d" * 36
            body = '[2,"0","' + "h" * 64 + '","k","false","ready","m","http://e",1]'
            r.set("buddy:lookup:e:v1", f"{dep}|{body}")
            r.set("buddy:lookup:e:v2", f"{dep}|{run_id}|{body}")
            scripts = {"v1 (no epoch)": r.register_script(_READ_V1)}
            scripts["current (epoch)"] = r.register_script(cache._READ)
            names = {"v1 (no epoch)": "v1", "current (epoch)": "v2"}
            print(f"read script cost, Redis CPU per call ({calls} calls x {repeats}, alternating)")
            for _ in range(repeats):
                row = []
                for label, script in scripts.items():
                    keys = [f"buddy:lookup:e:{names[label]}", "buddy:lookup:tomb:k:x"]
                    assert script(keys=keys, args=["buddy:lookup:"])[0] is not None
                    r.config_resetstat()
                    for _ in range(calls):
                        script(keys=keys, args=["buddy:lookup:"])
                    usec = r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]
                    row.append(f"{label}: {usec:6.2f} us")
                print("  " + "   ".join(row))
        finally:
            server.terminate()
            server.wait(10)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="rounds per kind of change")
    parser.add_argument("--processes", type=int, default=2, help="lookup processes")
    parser.add_argument("--script-cost", action="store_true", help="the epoch check's Redis CPU")
    args = parser.parse_args()

    # Its own Redis database (db 13): the test suite empties the test database between tests, and
    # a tombstone deleted under a live entry is a 200 this bench would rightly count as late.
    redis_url = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL") or ""
    os.environ["REDIS_URL"] = urlunsplit(urlsplit(redis_url)._replace(path="/13"))
    # Its own database; messages (the revoke-all safety net) to a queue nobody consumes, purged.
    configure(db_suffix="_revoke_bench", queue="bench-revoke-window")
    from django.db import transaction

    if args.script_cost:
        script_cost()
        return
    from deployments.models import Deployment, DeploymentStatus, Template
    from deployments.services import deployment_stop
    from keys import services
    from tests.harness.redis import purge_broker

    template = Template.objects.order_by("pk").first()
    assert template is not None, "no template: migrations seed two"
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    owner, _ = get_user_model().objects.get_or_create(username="bench-revoke")

    def ready_deployment() -> Deployment:
        return Deployment.objects.create(
            owner=owner,
            template=template,
            model_id=template.model_id,
            status=DeploymentStatus.READY,
            endpoint_url="http://127.0.0.1:9/v1",
            pack_ends_at=timezone.now() + timedelta(hours=1),
        )

    ctx = multiprocessing.get_context("spawn")
    queues = [ctx.Queue() for _ in range(args.processes)]
    events = ctx.Queue()
    probers = [ctx.Process(target=_prober, args=(q, events), daemon=True) for q in queues]
    for p in probers:
        p.start()

    committed: dict[int, float] = {}
    kind_of: dict[int, str] = {}
    shared = ready_deployment()
    idx = 0
    started = time.monotonic()
    for kind in ("revoke", "stop"):
        for _ in range(args.rounds):
            deployment = ready_deployment() if kind == "stop" else shared
            key, plaintext = services.key_create(
                deployment_id=deployment.pk, name=f"b{idx}", actor="bench"
            )
            for q in queues:
                q.put(("target", idx, plaintext))
            ok = 0
            deadline = time.monotonic() + 60
            while ok < args.processes:  # every prober has had a 200 (its cache hit follows)
                event = events.get(timeout=max(0.1, deadline - time.monotonic()))
                if event == ("ok", idx):
                    ok += 1
            time.sleep(0.02)  # a few cache hits in flight when the change commits
            with transaction.atomic():
                # First of the on-commit hooks, so it runs right after COMMIT (the change's own
                # hooks, publishing its follow-up messages, come after it).
                transaction.on_commit(lambda i=idx: committed.__setitem__(i, time.monotonic()))
                if kind == "stop":
                    deployment_stop(deployment_id=deployment.pk, actor="bench")
                else:
                    services.key_revoke(key_id=key.pk, actor="bench")
            kind_of[idx] = kind
            time.sleep(0.1)  # lookups after the commit
            idx += 1
    for q in queues:
        q.put(("stop",))
    records: list[tuple[int, float, float, int]] = []
    for _ in probers:
        while True:
            event = events.get(timeout=60)
            if event[0] == "records":
                records.extend(event[1])
                break
    for p in probers:
        p.join(30)
    purge_broker()
    elapsed = time.monotonic() - started

    print(
        f"revoke window: {args.rounds} rounds per change, {args.processes} lookup processes, "
        f"{len(records)} lookups in {elapsed:.1f} s"
    )
    print(
        f"{'change':<8}{'rounds':>7}{'min ms':>9}{'median':>9}{'p95':>9}{'max':>9}"
        f"{'late 200s':>11}{'409s':>6}{'after':>8}"
    )
    for kind in ("revoke", "stop"):
        windows: list[float] = []
        late_200s = late_409s = after = 0
        for i in (i for i, k in kind_of.items() if k == kind):
            t_commit = committed[i]
            mine = sorted((r for r in records if r[0] == i and r[1] > t_commit), key=lambda r: r[2])
            after += len(mine)
            late_200s += sum(1 for r in mine if r[3] == 200)
            late_409s += sum(1 for r in mine if r[3] == 409)
            refusals = [r for r in mine if r[3] != 200]
            if refusals:
                windows.append((refusals[0][2] - t_commit) * 1000)
        ms = windows or [float("nan")]
        print(
            f"{kind:<8}{len(windows):>7}{min(ms):>9.2f}{statistics.median(ms):>9.2f}"
            f"{_percentile(ms, 0.95):>9.2f}{max(ms):>9.2f}{late_200s:>11}{late_409s:>6}{after:>8}"
        )


if __name__ == "__main__":
    main()
