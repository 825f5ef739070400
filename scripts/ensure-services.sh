#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer on loopback, starting the
# local servers when they are installed but stopped. Fails loudly when they cannot be had.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

wait_for() {  # wait_for NAME CHECK: poll with a deadline, never a fixed sleep
  local name=$1 check=$2 deadline=$((SECONDS + 30))
  until $check; do
    if (( SECONDS > deadline )); then echo "ensure-services: $name did not come up within 30s" >&2; exit 1; fi
    sleep 0.2
  done
}

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    echo "ensure-services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  else
    echo "ensure-services: PostgreSQL is not reachable on 127.0.0.1:5432 and not installed here" >&2
    exit 1
  fi
  wait_for PostgreSQL pg_up
fi

if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "ensure-services: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  else
    echo "ensure-services: Redis is not reachable on 127.0.0.1:6379 and not installed here" >&2
    exit 1
  fi
  wait_for Redis redis_up
fi
echo "ensure-services: PostgreSQL and Redis are up"
