"""Usage of the gateway's completions, end to end: the official `openai` SDK against buddy under
uvicorn, a fake model server reporting usage, and the real pipeline (the web processes' buffers,
Redis, `celery beat` and a worker flushing into PostgreSQL), read back through the console API."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from buddy.usage.models import UsageHourly
from buddy.usage.services import usage_flush
from tests.console import token_client
from tests.harness.fakes import STREAM_PROMPT_TOKENS
from tests.harness.wait import wait_until

MESSAGES = [{"role": "user", "content": "hello buddy"}]
REPLY_WORDS = 4  # "upstream says: hello buddy": the fake counts a completion token per word


def sdk(buddy_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{buddy_url}/v1", api_key=key, max_retries=0, timeout=30)


def usage_of(api, key_id: str) -> dict:
    response = api.get(f"/api/v1/keys/{key_id}/usage")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.celery_worker
def test_completions_and_streams_show_their_exact_tokens_in_the_usage_endpoints_within_60_s(
    buddy_url, upstream, deploy, celery_beat
):
    deployed = deploy(f"{upstream.url}/ok")
    client = sdk(buddy_url, deployed.secret)

    completion = client.chat.completions.create(model="gemma4:26b", messages=MESSAGES)
    assert completion.usage is not None and completion.usage.total_tokens == 7

    # A stream whose client did not ask for usage: no chunk without choices, no usage.
    chunks = list(
        client.chat.completions.create(model="gemma4:26b", messages=MESSAGES, stream=True)
    )
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}

    # A stream whose client asked for it: the usage chunk, last, as OpenAI sends it.
    asked = list(
        client.chat.completions.create(
            model="gemma4:26b", messages=MESSAGES, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert asked[-1].choices == []
    assert asked[-1].usage is not None
    assert (asked[-1].usage.prompt_tokens, asked[-1].usage.completion_tokens) == (
        STREAM_PROMPT_TOKENS,
        REPLY_WORDS,
    )
    last_request = time.monotonic()

    api = token_client(deployed.deployment.owner)
    expected = {
        "requests": 3,
        "prompt_tokens": 3 + 2 * STREAM_PROMPT_TOKENS,
        "completion_tokens": 4 + 2 * REPLY_WORDS,
        "total_tokens": 7 + 2 * (STREAM_PROMPT_TOKENS + REPLY_WORDS),
    }
    body = wait_until(
        lambda: (u := usage_of(api, deployed.default_key_id))["totals"] == expected and u,
        timeout=60,
        interval=0.5,
        what="the usage to show in the key's usage endpoint",
    )
    assert time.monotonic() - last_request < 60
    assert [{k: v for k, v in b.items() if k != "start"} for b in body["buckets"]] == [expected]
    deployment_usage = api.get(f"/api/v1/deployments/{deployed.deployment.pk}/usage").json()
    assert deployment_usage["totals"] == expected
    key = api.get(f"/api/v1/keys/{deployed.default_key_id}").json()
    assert key["usage_24h"] == {"requests": 3, "total_tokens": expected["total_tokens"]}


def stream_bytes(url: str, body: dict, key: str | None = None) -> bytes:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", url, json=body, headers=headers) as response:
            assert response.status_code == 200
            return b"".join(response.iter_bytes())


@pytest.mark.parametrize("mode", ["ok", "nullusage"])
@pytest.mark.parametrize("client_asks", [False, True])
def test_a_streamed_client_receives_exactly_the_bytes_it_would_without_buddy_asking_for_usage(
    buddy_url, upstream, deploy, mode, client_asks
):
    deployed = deploy(f"{upstream.url}/{mode}")
    body = {"model": "gemma4:26b", "messages": MESSAGES, "stream": True}
    if client_asks:
        body["stream_options"] = {"include_usage": True}
    direct = stream_bytes(f"{upstream.url}/{mode}/v1/chat/completions", body)
    through_buddy = stream_bytes(f"{buddy_url}/v1/chat/completions", body, deployed.secret)
    assert through_buddy == direct
    assert (b'"usage"' in through_buddy) is client_asks


def flushed_counts(key_id: str) -> tuple[int, int, int] | None:
    """Run beat's flush here (the web processes hand their counts to Redis every few seconds)."""
    usage_flush()
    row = UsageHourly.objects.filter(key_id=key_id).first()
    return row and (row.requests, row.prompt_tokens, row.completion_tokens)


def test_a_stream_cut_off_without_usage_counts_the_request_and_no_tokens(
    buddy_url, upstream, deploy
):
    deployed = deploy(f"{upstream.url}/breaks")
    body = {"model": "gemma4:26b", "messages": MESSAGES, "stream": True}
    received = stream_bytes(f"{buddy_url}/v1/chat/completions", body, deployed.secret)
    assert b"upstream_error" in received
    assert wait_until(
        lambda: flushed_counts(deployed.default_key_id), timeout=30, what="the request counted"
    ) == (1, 0, 0)


def test_refused_and_failed_requests_are_not_counted(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/refuses")
    client = sdk(buddy_url, deployed.secret)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gemma4:26b", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="qwen3.6:27b", messages=MESSAGES)
    # A request that counts, after them: once it shows, the refused ones would have too.
    counted = deploy(f"{upstream.url}/ok")
    sdk(buddy_url, counted.secret).chat.completions.create(model="gemma4:26b", messages=MESSAGES)
    assert wait_until(
        lambda: flushed_counts(counted.default_key_id), timeout=30, what="the counted request"
    ) == (1, 3, 4)
    assert not UsageHourly.objects.filter(key_id=deployed.default_key_id).exists()
