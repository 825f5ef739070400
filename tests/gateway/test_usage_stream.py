"""`gateway.usage.UsageStream`: what a relayed stream's client receives, and the usage read from
it, however the upstream's bytes are cut into pieces."""

from __future__ import annotations

import json

import pytest

from gateway.usage import UsageStream, client_wants_usage, tokens_of, with_usage_requested


def sse(payload: object, sep: bytes = b"\n\n") -> bytes:
    return b"data: " + json.dumps(payload).encode() + sep


def chunk(content: str | None, **extra: object) -> dict:
    delta = {} if content is None else {"content": content}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}],
            **extra}  # fmt: skip


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
PLAIN = [sse(chunk("a")), sse(chunk(" b")), sse(chunk(None))]
USAGE_EVENT = sse({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": USAGE})
DONE = b"data: [DONE]\n\n"


def relayed(stream: UsageStream, data: bytes, size: int) -> bytes:
    out = [stream.feed(data[i : i + size]) for i in range(0, len(data), size)]
    return b"".join(out) + stream.end()


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
def test_the_usage_chunk_the_client_did_not_ask_for_is_taken_out_and_read(size):
    stream = UsageStream(keep_usage=False)
    assert relayed(stream, b"".join([*PLAIN, USAGE_EVENT, DONE]), size) == b"".join([*PLAIN, DONE])
    assert stream.reported
    assert (stream.prompt_tokens, stream.completion_tokens) == (7, 3)


@pytest.mark.parametrize("size", [1, 5, 10_000])
def test_a_client_that_asked_for_usage_gets_every_byte(size):
    data = b"".join([*PLAIN, USAGE_EVENT, DONE])
    stream = UsageStream(keep_usage=True)
    assert relayed(stream, data, size) == data
    assert (stream.prompt_tokens, stream.completion_tokens) == (7, 3)


def test_usage_null_on_every_chunk_is_taken_out_when_the_client_did_not_ask():
    asked = [sse(chunk("a", usage=None)), sse({"usage": None, **chunk("b")})]
    stream = UsageStream(keep_usage=False)
    out = relayed(stream, b"".join([*asked, USAGE_EVENT, DONE]), 3)
    assert out == b"".join([sse(chunk("a")), sse(chunk("b")), DONE])
    assert stream.reported


def test_usage_on_a_chunk_with_content_keeps_the_content():
    stream = UsageStream(keep_usage=False)
    out = relayed(stream, sse(chunk("last", usage=USAGE)) + DONE, 4)
    assert out == sse(chunk("last")) + DONE
    assert (stream.prompt_tokens, stream.completion_tokens) == (7, 3)


def test_crlf_events_and_a_last_event_without_its_blank_line():
    data = sse(chunk("a"), b"\r\n\r\n") + USAGE_EVENT.rstrip(b"\n")
    stream = UsageStream(keep_usage=False)
    assert relayed(stream, data, 5) == sse(chunk("a"), b"\r\n\r\n")
    assert stream.reported


def test_a_stream_cut_off_before_its_usage_reports_nothing():
    stream = UsageStream(keep_usage=False)
    assert relayed(stream, b"".join(PLAIN) + b'data: {"id": "c", "choi', 4) == b"".join(PLAIN) + (
        b'data: {"id": "c", "choi'
    )
    assert not stream.reported
    assert (stream.prompt_tokens, stream.completion_tokens) == (0, 0)


def test_content_that_mentions_usage_is_left_alone():
    text = sse(chunk('say "usage": null, please'))
    stream = UsageStream(keep_usage=False)
    assert relayed(stream, text + DONE, 3) == text + DONE
    assert not stream.reported


def test_the_upstream_is_asked_for_usage_keeping_the_clients_stream_options():
    body = {"model": "m", "stream": True, "stream_options": {"other": 1}}
    assert with_usage_requested(body)["stream_options"] == {"other": 1, "include_usage": True}
    assert body["stream_options"] == {"other": 1}
    assert not client_wants_usage(body)
    asked = {"stream_options": {"include_usage": True}}
    assert with_usage_requested(asked) is asked and client_wants_usage(asked)


@pytest.mark.parametrize(
    ("answer", "tokens"),
    [
        ({"usage": USAGE}, (7, 3)),
        ({"usage": None}, None),
        ({}, None),
        ({"usage": {"prompt_tokens": -1, "completion_tokens": "3"}}, (0, 0)),
        ({"usage": {"prompt_tokens": True, "completion_tokens": 2.5}}, (0, 0)),
    ],
)
def test_tokens_are_read_from_usage_as_non_negative_integers_only(answer, tokens):
    assert tokens_of(answer) == tokens
