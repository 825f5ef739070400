"""The one test harness: what the tests start, reach and wait on besides the code under test.

- `ports`: free TCP ports on loopback, within `BUDDY_TEST_PORTS` when it is set;
- `wait`: `wait_until`, the one way to wait for a condition (a deadline, never a fixed sleep);
- `db`: the test database's URL, for a process that is not this one;
- `redis`: a private `redis-server` a test may stop and start, the broker's queues, and pointing
  this process's publisher and lookup cache at another Redis;
- `processes`: buddy (uvicorn or gunicorn) and Celery worker/beat in subprocesses, on the test
  database and Redis, stopped with their children;
- `fakes`: the fake orchestrator and the fake model server, served from a thread of this process;
- `threads`: a function run from many real threads at once.

The fixtures built on them are in `tests/conftest.py` (and the gateway's in `tests/gateway/`).
"""
