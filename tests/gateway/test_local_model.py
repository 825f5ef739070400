"""The built-in model server of the `local` provisioner, called directly (in process)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, override_settings

from tests.factories import TemplateFactory

CHAT = {"model": "gemma4:26b", "messages": [{"role": "user", "content": "  say it  twice "}]}


def call(path: str, body: object = None, **headers: str) -> tuple[int, bytes, str]:
    async def go() -> tuple[int, bytes, str]:
        client = AsyncClient()
        if body is None:
            response = await client.get(path, headers=headers)
        else:
            response = await client.post(
                path, data=json.dumps(body), content_type="application/json", headers=headers
            )
        if response.streaming:
            content = b"".join([chunk async for chunk in response.streaming_content])
        else:
            content = response.content
        return response.status_code, content, response["Content-Type"]

    return async_to_sync(go)()


URL = "/local-model/v1/chat/completions"


@override_settings(BUDDY_LOCAL_MODEL_ENABLED=True, BUDDY_UPSTREAM_API_KEY="")
def test_it_echoes_the_last_user_message_with_usage():
    body = {**CHAT, "messages": [{"role": "user", "content": "first"}, *CHAT["messages"]]}
    status, content, _ = call(URL, body)
    assert status == 200
    answer = json.loads(content)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "say it  twice"}
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


@override_settings(BUDDY_LOCAL_MODEL_ENABLED=True, BUDDY_UPSTREAM_API_KEY="")
def test_it_streams_the_same_answer_as_chunks_then_done():
    status, content, content_type = call(
        URL, {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert status == 200
    assert content_type.startswith("text/event-stream")
    events = [e.removeprefix("data: ") for e in content.decode().split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "say it  twice"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


@override_settings(BUDDY_LOCAL_MODEL_ENABLED=True, BUDDY_UPSTREAM_API_KEY="")
def test_max_tokens_cuts_the_answer():
    status, content, _ = call(URL, {**CHAT, "max_tokens": 2})
    assert status == 200
    answer = json.loads(content)
    assert answer["choices"][0]["message"]["content"] == "say it"
    assert answer["choices"][0]["finish_reason"] == "length"


@override_settings(BUDDY_LOCAL_MODEL_ENABLED=True, BUDDY_UPSTREAM_API_KEY="upstream-secret")
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Bearer upstream-secre"])
def test_it_demands_the_upstream_credential_when_one_is_set(authorization):
    headers = {"Authorization": authorization} if authorization else {}
    status, content, _ = call(URL, CHAT, **headers)
    assert status == 401
    assert json.loads(content)["error"]["code"] == "invalid_api_key"
    status, _, _ = call(URL, CHAT, Authorization="Bearer upstream-secret")
    assert status == 200


@override_settings(BUDDY_LOCAL_MODEL_ENABLED=True, BUDDY_UPSTREAM_API_KEY="")
def test_it_validates_the_body_like_the_gateway():
    status, content, _ = call(URL, {**CHAT, "top_p": 3})
    assert status == 400
    assert json.loads(content)["error"]["param"] == "top_p"


@override_settings(BUDDY_LOCAL_MODEL_ENABLED=False)
@pytest.mark.parametrize("path", [URL, "/local-model/v1/models"])
def test_it_is_not_served_unless_enabled(path):
    status, content, _ = call(path, CHAT if path == URL else None)
    assert status == 404
    assert json.loads(content)["error"]["code"] == "not_found"


@override_settings(BUDDY_LOCAL_MODEL_ENABLED=True, BUDDY_UPSTREAM_API_KEY="")
def test_models_lists_every_active_template(transactional_db):
    TemplateFactory()
    TemplateFactory(slug="qwen3-6-27b", name="Qwen3.6 27B A4B", model_id="qwen3.6:27b")
    TemplateFactory(slug="old", name="Old", model_id="old:1b", is_active=False)
    status, content, _ = call("/local-model/v1/models")
    assert status == 200
    assert [m["id"] for m in json.loads(content)["data"]] == ["gemma4:26b", "qwen3.6:27b"]


def test_word_count_is_linear_in_whitespace():
    """A megabyte of whitespace after a word (and inside the prompt) is counted in well under a
    second; the quadratic pattern it replaces took minutes for 40 000 spaces, hours for this."""
    import time

    from gateway.local_model import reply_for

    spaces = " \t\n" * 350_000  # ~1 MB
    body = {
        "model": "gemma4:26b",
        "messages": [
            {"role": "system", "content": "be brief" + spaces},
            {"role": "user", "content": "hello" + spaces + "world" + spaces},
        ],
    }
    started = time.perf_counter()
    pieces, prompt_tokens, finish = reply_for(body)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{elapsed:.2f} s for a megabyte of whitespace"
    assert pieces == ["hello", spaces + "world"]
    assert (prompt_tokens, finish) == (4, "stop")


@override_settings(BUDDY_LOCAL_MODEL_ENABLED=True, BUDDY_UPSTREAM_API_KEY="")
def test_a_megabyte_of_trailing_whitespace_is_answered_at_once():
    import time

    body = {**CHAT, "messages": [{"role": "user", "content": "hello" + " " * 1_000_000}]}
    started = time.perf_counter()
    status, content, _ = call(URL, body)
    assert time.perf_counter() - started < 2.0
    assert status == 200
    answer = json.loads(content)
    assert answer["choices"][0]["message"]["content"] == "hello"
    assert answer["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
