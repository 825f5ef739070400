from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buddy.core.errors import ValidationFailed
from gateway.validation import InvalidJson, parse_json_object, validate_chat_request

VALID = {"model": "gemma4:26b", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("raw", [b"", b"{", b"null", b"[]", b'"text"', b"3", b"\xff"])
def test_anything_but_a_json_object_is_invalid_json(raw):
    with pytest.raises(InvalidJson):
        parse_json_object(raw)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"temperature": 0, "top_p": 1, "max_tokens": 1},
        {"temperature": 2.0, "top_p": 0.0, "max_completion_tokens": 4096},
        {"temperature": None, "top_p": None, "max_tokens": None, "stream": None},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"tools": [{"type": "function"}], "seed": 3, "response_format": {"type": "json_object"}},
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
            ]
        },
    ],
)
def test_valid_bodies_pass_through_untouched(extra):
    body = {**VALID, **extra}
    chat = validate_chat_request(body)
    assert chat.body is body
    assert chat.model == "gemma4:26b"
    assert chat.stream is bool(extra.get("stream"))


def test_every_wrong_field_is_reported_at_once():
    with pytest.raises(ValidationFailed) as caught:
        validate_chat_request(
            {"model": "", "messages": [{"role": "user"}, "hi"], "temperature": -0.1, "top_p": 2}
        )
    assert set(caught.value.fields) == {
        "model",
        "messages.0.content",
        "messages.1",
        "temperature",
        "top_p",
    }


@pytest.mark.parametrize("value", [True, False, "1", [1], float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["temperature", "top_p", "max_tokens"])
def test_numbers_must_be_real_numbers(name, value):
    with pytest.raises(ValidationFailed) as caught:
        validate_chat_request({**VALID, name: value})
    assert name in caught.value.fields


def test_nan_in_the_json_text_is_refused():
    body = parse_json_object(
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}'
    )
    with pytest.raises(ValidationFailed):
        validate_chat_request(body)


@given(st.floats(allow_nan=False), st.floats(allow_nan=False))
def test_temperature_and_top_p_accepted_exactly_in_their_ranges(temperature, top_p):
    body = {**VALID, "temperature": temperature, "top_p": top_p}
    ok = 0 <= temperature <= 2 and 0 <= top_p <= 1
    if ok:
        validate_chat_request(body)
    else:
        with pytest.raises(ValidationFailed):
            validate_chat_request(body)


@given(st.integers())
def test_max_tokens_accepted_exactly_when_positive(max_tokens):
    body = {**VALID, "max_tokens": max_tokens}
    if max_tokens > 0:
        validate_chat_request(body)
    else:
        with pytest.raises(ValidationFailed):
            validate_chat_request(body)
