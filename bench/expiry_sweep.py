"""How many deployments per second the expiry sweep terminates, by batch size, side by side.

    make bench-expiry                        # PG_URL / TEST_REDIS_URL as for `make test`
    .venv/bin/python bench/expiry_sweep.py --deployments 2000 --keys 3 --batch-sizes 50,200,500,1000

For each batch size the same data is created afresh: N live deployments whose pack has ended,
each with K active keys, among M deployments whose pack has not (the sweep must skip them through
its partial index). Then the sweep task body (`deployments.expire_packs`) runs in this process,
exactly as a worker runs it: row locks, one event per deployment, lookup-cache tombstones in Redis,
and two follow-up messages per batch published to Redis on commit (to a queue of the bench's own,
purged afterwards). The revocation of the ended deployments' keys, which one of those messages asks
a worker for (`keys.revoke_for_deployments`), is then run here too and measured in keys per second.

It uses its own database (`<PG_URL database>_bench`, created and migrated on first use).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(*, db_suffix: str = "_bench", queue: str = "bench-expiry") -> None:
    """Django on the bench's own database (`<PG_URL database><db_suffix>`, created and migrated on
    first use) and the Redis of REDIS_URL/TEST_REDIS_URL, its messages on a queue of its own."""
    pg = os.environ.get("PG_URL") or os.environ.get("DATABASE_URL")
    if not pg or not pg.startswith("postgres"):
        sys.exit("set PG_URL (postgres://...) — the bench runs on PostgreSQL")
    if not os.environ.get("REDIS_URL") and not os.environ.get("TEST_REDIS_URL"):
        sys.exit("set REDIS_URL or TEST_REDIS_URL — the bench needs Redis")
    parts = urlsplit(pg)
    bench_db = parts.path.lstrip("/") + db_suffix
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path="/" + bench_db))
    os.environ.setdefault("REDIS_URL", os.environ.get("TEST_REDIS_URL", ""))
    os.environ.setdefault("SECRET_KEY", "bench-secret-key")
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["BUDDY_PROVISIONER"] = "none"
    os.environ["BUDDY_CELERY_QUEUE"] = queue
    os.environ["DJANGO_SETTINGS_MODULE"] = "buddy.settings"

    import psycopg

    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [bench_db]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{bench_db}"')

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _reset_and_seed(*, expired: int, live: int, keys_per: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from deployments.models import Deployment, DeploymentStatus, Template
    from keys import tokens
    from keys.models import ApiKey

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE keys_apikey, deployments_deploymentevent, deployments_deployment CASCADE"
        )
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    template = Template.objects.order_by("pk").first()
    now = timezone.now()
    deployments = [
        Deployment(
            owner=owner,
            template=template,
            model_id=template.model_id,
            status=DeploymentStatus.READY,
            endpoint_url="http://10.0.0.1:8000/v1",
            pack_ends_at=now - timedelta(minutes=1) if i < expired else now + timedelta(hours=8),
        )
        for i in range(expired + live)
    ]
    Deployment.objects.bulk_create(deployments, batch_size=2000)
    keys = [
        ApiKey(
            deployment=d,
            name=f"k{j}",
            public_id=tokens.generate().public_id,
            secret_hash="bench",
            is_default=j == 0,
        )
        for d in deployments
        for j in range(keys_per)
    ]
    ApiKey.objects.bulk_create(keys, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deployments_deployment; ANALYZE keys_apikey")


def _purge_queue() -> None:
    import redis
    from django.conf import settings

    r = redis.Redis.from_url(settings.REDIS_URL)
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    r.delete(prefix + settings.CELERY_TASK_DEFAULT_QUEUE)


def _plan() -> str:
    from django.db import connection
    from django.utils import timezone

    from deployments.selectors import deployment_list_expired

    # The sweep's own candidate query (`deployment_expire_batch` claims from it).
    query = deployment_list_expired(now=timezone.now()).values_list("pk", flat=True)[:500]
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join("    " + row[0] for row in cursor.fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deployments", type=int, default=2000, help="expired deployments")
    parser.add_argument("--live", type=int, default=2000, help="deployments not expired")
    parser.add_argument("--keys", type=int, default=3, help="active keys per deployment")
    parser.add_argument("--batch-sizes", default="50,200,500,1000")
    args = parser.parse_args()
    configure()

    from django.conf import settings
    from django.test import override_settings

    from deployments.models import PACK_EXPIRED_STATUS, Deployment
    from deployments.tasks import expire_packs
    from keys.models import ApiKey
    from keys.tasks import revoke_for_deployments

    print(
        f"expiry sweep: {args.deployments} expired deployments x {args.keys} keys, "
        f"{args.live} live ones, PostgreSQL {settings.DATABASES['default']['NAME']}, "
        f"Redis {settings.REDIS_URL}"
    )
    rows = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        _reset_and_seed(expired=args.deployments, live=args.live, keys_per=args.keys)
        if not rows:
            print("  candidate query plan:\n" + _plan())
        with override_settings(BUDDY_EXPIRY_BATCH_SIZE=batch, BUDDY_EXPIRY_INTERVAL_SECONDS=3600):
            start = time.perf_counter()
            terminated = expire_packs.apply().get()
            sweep = time.perf_counter() - start
        assert terminated == args.deployments, terminated
        assert Deployment.objects.filter(status=PACK_EXPIRED_STATUS).count() == args.deployments
        # What the follow-up messages ask the workers for: every key of those revoked.
        ended = list(
            Deployment.objects.filter(status=PACK_EXPIRED_STATUS).values_list("pk", flat=True)
        )
        start = time.perf_counter()
        for first in range(0, len(ended), batch):  # one message per sweep batch, as sent
            revoke_for_deployments.apply(args=[[str(pk) for pk in ended[first : first + batch]]])
        revoke = time.perf_counter() - start
        revoked = ApiKey.objects.filter(deployment_id__in=ended, revoked_at__isnull=False).count()
        assert revoked == args.deployments * args.keys
        assert not ApiKey.objects.filter(deployment_id__in=ended, revoked_at__isnull=True).exists()
        _purge_queue()
        rows.append((batch, sweep, revoke, revoked))

    best = max(args.deployments / s for _, s, _, _ in rows)
    header = ("batch", "sweep s", "deploy/s", "vs best", "revoke s", "keys/s")
    print("  " + " ".join(f"{h:>{w}}" for h, w in zip(header, (6, 8, 9, 8, 9, 8), strict=True)))
    for batch, sweep, revoke, revoked in rows:
        rate = args.deployments / sweep
        print(
            f"  {batch:>6} {sweep:>8.2f} {rate:>9.0f} {rate / best:>8.2f} "
            f"{revoke:>9.2f} {revoked / revoke:>8.0f}"
        )


if __name__ == "__main__":
    main()
