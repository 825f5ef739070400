"""No lookup answers 200 once the transaction that revokes its key, or ends its deployment, has
committed: the real web server (gunicorn, several workers, PostgreSQL, Redis) is hammered over
HTTP from another process while this one revokes keys and stops deployments, hundreds of times.

A request counts against the guarantee if it was *sent* after the revoking call returned (its
commit done); requests in flight across the commit may answer either way.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Iterator

import pytest

from buddy.accounts.services import service_token_create
from deployments.services import deployment_stop
from keys import services
from tests.factories import DeploymentFactory
from tests.harness.processes import buddy_server
from tests.keys.lookup_hammer import hammer

pytestmark = pytest.mark.django_db(transaction=True)
REVOKES = 200
STOPS = 100


@pytest.fixture
def live_server_url(transactional_db) -> Iterator[str]:
    """gunicorn as deployed (several sync workers) on the test database and Redis."""
    with buddy_server("gunicorn", workers=2, ALLOWED_HOSTS="127.0.0.1") as url:
        yield url


def _wait_for(events, kind: str, idx: int, pending: dict, deadline_s: float = 15.0) -> tuple:
    """The hammer's first event of `kind` for round `idx` (events of other rounds are kept)."""
    deadline = time.monotonic() + deadline_s
    while (kind, idx) not in pending:
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind} event for round {idx} within {deadline_s} s"
        try:
            event = events.get(timeout=left)
        except queue.Empty:
            continue
        pending[(event[0], event[1])] = event
    return pending.pop((kind, idx))


def test_no_lookup_answers_200_after_a_revoke_or_a_stop_commits(live_server_url, template):
    _token, service_token = service_token_create(name="hammer", role="proxy")
    port = int(live_server_url.rsplit(":", 1)[1])
    ctx = multiprocessing.get_context("spawn")
    commands, events = ctx.Queue(), ctx.Queue()
    prober = ctx.Process(target=hammer, args=(port, service_token, commands, events), daemon=True)
    prober.start()

    shared = DeploymentFactory(template=template, ready=True)
    committed_at: dict[int, float] = {}
    refusal_after_commit: list[float] = []
    pending: dict = {}
    try:
        for idx in range(REVOKES + STOPS):
            stopping = idx >= REVOKES
            deployment = DeploymentFactory(template=template, ready=True) if stopping else shared
            key, plaintext = services.key_create(
                deployment_id=deployment.pk, name=f"k{idx}", actor="t"
            )
            commands.put(("target", idx, plaintext))
            if idx % 2 == 0:
                # Half the rounds revoke a key the cache already holds ...
                _wait_for(events, "ok", idx, pending)
            # ... and half race the revoke against the first lookups' fills.
            if stopping:
                deployment_stop(deployment_id=deployment.pk, actor="t")
            else:
                services.key_revoke(key_id=key.pk, actor="t")
            committed_at[idx] = time.monotonic()
            refused = _wait_for(events, "refused", idx, pending)
            # A stop revokes the deployment's keys in its own transaction: 401, never a 409.
            assert refused[4] == 401, refused
            refusal_after_commit.append(max(0.0, refused[3] - committed_at[idx]))
    finally:
        commands.put(("stop",))
    records: list[tuple[int, float, int]] = []
    deadline = time.monotonic() + 60
    while True:
        event = events.get(timeout=max(0.1, deadline - time.monotonic()))
        if event[0] == "records":
            records.extend(event[1])
        elif event[0] == "done":
            break
    prober.join(30)

    late_200s = [
        (idx, t_send - committed_at[idx])
        for idx, t_send, status in records
        if status == 200 and idx in committed_at and t_send > committed_at[idx]
    ]
    after_commit = [r for r in records if r[0] in committed_at and r[1] > committed_at[r[0]]]
    errors = [r for r in records if r[2] in (-1, 500)]
    assert late_200s == [], f"{len(late_200s)} lookups answered 200 after the commit"
    late_409s = [r for r in after_commit if r[2] == 409]
    assert late_409s == [], f"{len(late_409s)} lookups answered 409 after a stop's commit"
    assert errors == []
    assert len(committed_at) == REVOKES + STOPS
    # The hammer really was hammering across the commits.
    assert len(after_commit) >= REVOKES + STOPS
    assert max(refusal_after_commit) < 5
