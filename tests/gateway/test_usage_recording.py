"""`gateway.usage.record_completion_usage`: the one place the gateway learns a completion's usage."""

from __future__ import annotations

import uuid

import pytest

from buddy.ops.metrics import PROCESS_REGISTRY
from buddy.usage.buffer import recorder
from gateway.usage import record_completion_usage
from keys.lookup.outcomes import KeySnapshot


def snapshot() -> KeySnapshot:
    return KeySnapshot(
        key_id=str(uuid.uuid4()), public_id="p" * 12, revoked=False,
        deployment_id=str(uuid.uuid4()), deployment_status="ready", model="m",
        endpoint_url="http://x", pack_ends_at=None,
    )  # fmt: skip


def tokens(kind: str) -> float:
    return PROCESS_REGISTRY.get_sample_value("buddy_gateway_tokens_total", {"kind": kind}) or 0.0


@pytest.fixture(autouse=True)
def _empty_recorder():
    recorder.take()
    yield
    recorder.take()


def test_a_completion_is_counted_in_the_process_and_its_tokens_in_prometheus():
    hit = snapshot()
    prompt, completion = tokens("prompt"), tokens("completion")
    record_completion_usage(hit, 3, 4)
    record_completion_usage(hit, 0, 0)
    assert [(k, d, counts) for (k, d, _hour), counts in recorder.take().items()] == [
        (hit.key_id, hit.deployment_id, [2, 3, 4])
    ]
    assert (tokens("prompt") - prompt, tokens("completion") - completion) == (3, 4)


def test_recording_can_be_switched_off(settings):
    settings.BUDDY_USAGE_RECORDING = False
    record_completion_usage(snapshot(), 3, 4)
    assert recorder.take() == {}
