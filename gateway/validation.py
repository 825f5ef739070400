"""The gateway's checks of a chat request body, done before any upstream call.

Only what the contract needs is checked (and what a model server would otherwise answer with an
unhelpful error); every other field is passed through untouched, so newer OpenAI parameters work
without a change here. `null` stands for "not given", as the OpenAI API treats it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from buddy.core import errors
from buddy.core.errors import DomainError, ValidationFailed

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class InvalidJson(DomainError):
    entry = errors.INVALID_JSON.saying("The body is not a valid JSON object.")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    body: dict[str, Any]
    model: str
    stream: bool


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or InvalidJson."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: JSON nested deeper than the parser's stack ("[" * 100_000).
        raise InvalidJson() from None
    if not isinstance(body, dict):
        raise InvalidJson("The body must be a JSON object.")
    return body


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _message_errors(index: int, message: object) -> dict[str, list[str]]:
    where = f"messages.{index}"
    if not isinstance(message, dict):
        return {where: ["Each message must be an object with 'role' and 'content'."]}
    errors: dict[str, list[str]] = {}
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        errors[f"{where}.role"] = [f"Must be one of: {', '.join(sorted(ROLES))}."]
    content = message.get("content")
    calls_a_tool = role == "assistant" and (
        message.get("tool_calls") is not None or message.get("function_call") is not None
    )
    if content is None and not calls_a_tool:
        errors[f"{where}.content"] = ["This field is required."]
    elif content is not None and not (
        isinstance(content, str)
        or (isinstance(content, list) and all(isinstance(part, dict) for part in content))
    ):
        errors[f"{where}.content"] = ["Must be a string or a list of content parts."]
    return errors


def validate_chat_request(body: dict[str, Any]) -> ChatRequest:
    """Check the fields the contract names; ValidationFailed lists every field that is wrong."""
    errors: dict[str, list[str]] = {}
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        errors["model"] = ["A non-blank string is required."]
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        errors["messages"] = ["A non-empty list of messages is required."]
    else:
        for index, message in enumerate(messages):
            errors.update(_message_errors(index, message))
    temperature = body.get("temperature")
    if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= 2):
        errors["temperature"] = ["Must be a number from 0 to 2."]
    top_p = body.get("top_p")
    if top_p is not None and not (_is_number(top_p) and 0 <= top_p <= 1):
        errors["top_p"] = ["Must be a number from 0 to 1."]
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and not _is_positive_int(value):
            errors[name] = ["Must be a positive integer."]
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        errors["stream"] = ["Must be a boolean."]
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        errors["stream_options"] = ["Must be an object."]
    if errors:
        raise ValidationFailed("The request is not valid.", fields=errors)
    return ChatRequest(body=body, model=str(model), stream=bool(stream))
