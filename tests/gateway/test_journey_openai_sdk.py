"""The seed's journey, with the official `openai` SDK as the client of a real buddy server.

Deploy gemma4:26b, mark it ready, reveal the default key, complete and stream with it, create a
second key, revoke the default one, restart the instance, stop it: the console API's services
drive the platform, and only `/v1/...` is called over HTTP, as a customer would.
"""

from __future__ import annotations

import openai
import pytest

from deployments.services import (
    deployment_mark_provisioning,
    deployment_mark_ready,
    deployment_stop,
)
from keys.services import key_create, key_revoke

MESSAGES = [{"role": "user", "content": "hello buddy"}]


def client(buddy_url: str, key: str) -> openai.OpenAI:
    # No retries: the SDK retries 409 and 5xx by default, which would hide the answers under test.
    return openai.OpenAI(base_url=f"{buddy_url}/v1", api_key=key, max_retries=0, timeout=30)


def test_the_journey_with_the_openai_sdk(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/gated")
    sdk = client(buddy_url, deployed.secret)

    # A completion with the default key.
    completion = sdk.chat.completions.create(model="gemma4:26b", messages=MESSAGES)
    assert completion.choices[0].message.content == "upstream says: hello buddy"
    assert completion.usage is not None and completion.usage.total_tokens == 7
    assert [m.id for m in sdk.models.list()] == ["gemma4:26b"]

    # A streamed completion: the first chunk arrives while the upstream is still answering.
    upstream.reset()
    stream = sdk.chat.completions.create(model="gemma4:26b", messages=MESSAGES, stream=True)
    chunks = iter(stream)
    first = next(chunks)
    assert first.choices[0].delta.role == "assistant"
    assert not upstream.finished.is_set(), "the first chunk waited for the whole answer"
    upstream.release.set()
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert upstream.finished.is_set()
    assert text.strip() == "upstream says: hello buddy"

    # A wrong model is 400.
    with pytest.raises(openai.BadRequestError) as wrong_model:
        sdk.chat.completions.create(model="qwen3.6:27b", messages=MESSAGES)
    assert wrong_model.value.code == "model_mismatch"

    # A second key works; once the default key is revoked, it is refused (401).
    _second, second_secret = key_create(
        deployment_id=deployed.deployment.pk, name="ci", actor="test"
    )
    second = client(buddy_url, second_secret)
    assert second.chat.completions.create(model="gemma4:26b", messages=MESSAGES).choices
    key_revoke(key_id=deployed.default_key_id, actor="test")
    with pytest.raises(openai.AuthenticationError) as revoked:
        sdk.chat.completions.create(model="gemma4:26b", messages=MESSAGES)
    assert revoked.value.code == "revoked_api_key"

    # The instance restarts: its keys answer 409 until it is ready again.
    deployment_mark_provisioning(deployment_id=deployed.deployment.pk, actor="test")
    with pytest.raises(openai.ConflictError) as restarting:
        second.chat.completions.create(model="gemma4:26b", messages=MESSAGES)
    assert restarting.value.code == "deployment_not_ready"
    deployment_mark_ready(
        deployment_id=deployed.deployment.pk, endpoint_url=f"{upstream.url}/ok", actor="test"
    )
    assert second.chat.completions.create(model="gemma4:26b", messages=MESSAGES).choices

    # Stopped: every key is revoked by the stop itself (API.md v2), 401 at once.
    deployment_stop(deployment_id=deployed.deployment.pk, actor="test")
    for key in (deployed.secret, second_secret):
        with pytest.raises(openai.AuthenticationError) as stopped:
            client(buddy_url, key).chat.completions.create(model="gemma4:26b", messages=MESSAGES)
        assert stopped.value.code == "revoked_api_key"
    with pytest.raises(openai.AuthenticationError) as stopped_key:
        second.chat.completions.create(model="gemma4:26b", messages=MESSAGES, stream=True)
    assert stopped_key.value.code == "revoked_api_key"


def test_an_upstream_that_breaks_mid_stream_raises_in_the_sdk(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/breaks")
    stream = client(buddy_url, deployed.secret).chat.completions.create(
        model="gemma4:26b", messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError, match="could not be reached"):
        list(stream)


def test_the_built_in_model_answers_through_the_gateway(buddy_url, deploy):
    """What `make run` gives: the local provisioner's endpoint is buddy's own /local-model."""
    deployed = deploy(f"{buddy_url}/local-model")
    sdk = client(buddy_url, deployed.secret)
    completion = sdk.chat.completions.create(
        model="gemma4:26b", messages=[{"role": "user", "content": "echo me please"}]
    )
    assert completion.choices[0].message.content == "echo me please"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 3)

    stream = sdk.chat.completions.create(
        model="gemma4:26b",
        messages=[{"role": "user", "content": "echo me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "echo me please"
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 6
