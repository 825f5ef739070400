"""The `local` provisioner's model server: an OpenAI-compatible chat endpoint inside buddy.

It answers deterministically (the reply is the last user message, echoed), with `usage` counted
in whitespace-separated words, and streams when asked, so that `make run` gives a platform whose
deployed models answer without a GPU. `max_tokens` cuts the reply (`finish_reason: "length"`).
When `BUDDY_UPSTREAM_API_KEY` is set it demands that credential, as a real model server would.
Served at `/local-model/v1/` while `BUDDY_LOCAL_MODEL_ENABLED` (default: with the `local`
provisioner); otherwise it answers 404.
"""

from __future__ import annotations

import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from buddy.core import errors
from buddy.core.credentials import bearer_token
from buddy.core.errors import DomainError
from buddy.http.errors import domain_error_response, error_response
from deployments.selectors import template_list_active
from gateway.validation import parse_json_object, validate_chat_request
from gateway.views import SSE_HEADERS, method_not_allowed

EMPTY_REPLY = "(empty message)"


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


_WORD = re.compile(r"\S+")


def _words(text: str) -> list[str]:
    """The reply's pieces, each word with the whitespace before it (so they join back exactly).

    Linear in the text: the pattern matches words alone and each piece is sliced from the end of
    the one before. (`\\s*\\S+` retried its `\\s*` from every position of a run of whitespace that
    no word follows: quadratic, a megabyte of trailing spaces took hours.)"""
    pieces = []
    start = 0
    for match in _WORD.finditer(text):
        pieces.append(text[start : match.end()])
        start = match.end()
    return pieces


def reply_for(body: dict[str, Any]) -> tuple[list[str], int, str]:
    """(pieces of the reply, prompt tokens, finish reason) for a validated body."""
    messages = body["messages"]
    user_texts = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    pieces = _words(user_texts[-1].strip() if user_texts else "") or [EMPTY_REPLY]
    prompt_tokens = sum(len(_words(_text(m.get("content")))) for m in messages)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None and len(pieces) > limit:
        return pieces[:limit], prompt_tokens, "length"
    return pieces, prompt_tokens, "stop"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _refusal(request: HttpRequest) -> HttpResponse | None:
    if not settings.BUDDY_LOCAL_MODEL_ENABLED:
        return error_response(errors.NOT_FOUND)
    expected = settings.BUDDY_UPSTREAM_API_KEY
    if expected:
        presented = bearer_token(request.headers.get("Authorization")) or ""
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            return error_response(errors.INVALID_API_KEY, message="Invalid upstream credential.")
    return None


async def _chunks(
    *,
    completion_id: str,
    model: str,
    pieces: list[str],
    prompt_tokens: int,
    finish: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    created = int(time.time())

    def event(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    yield event({"role": "assistant", "content": ""}, None)
    for piece in pieces:
        yield event({"content": piece}, None)
    yield event({}, finish)
    if include_usage:
        usage_chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage(prompt_tokens, len(pieces)),
        }
        yield f"data: {json.dumps(usage_chunk)}\n\n".encode()
    yield b"data: [DONE]\n\n"


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return method_not_allowed("POST")
    if (refusal := _refusal(request)) is not None:
        return refusal
    try:
        chat = validate_chat_request(parse_json_object(request.body))
    except DomainError as exc:
        return domain_error_response(exc)
    pieces, prompt_tokens, finish = reply_for(chat.body)
    completion_id = f"chatcmpl-local-{uuid.uuid4().hex}"
    if chat.stream:
        options = chat.body.get("stream_options") or {}
        return StreamingHttpResponse(
            _chunks(
                completion_id=completion_id,
                model=chat.model,
                pieces=pieces,
                prompt_tokens=prompt_tokens,
                finish=finish,
                include_usage=bool(options.get("include_usage")),
            ),
            content_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    return JsonResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces)},
                    "finish_reason": finish,
                }
            ],
            "usage": _usage(prompt_tokens, len(pieces)),
        }
    )


@sync_to_async(thread_sensitive=False)
def _model_ids() -> list[str]:
    close_old_connections()
    try:
        return sorted(set(template_list_active().values_list("model_id", flat=True)))
    finally:
        close_old_connections()


@csrf_exempt
async def models(request: HttpRequest) -> HttpResponse:
    """Every active template's model: the local model server answers for any of them."""
    if request.method != "GET":
        return method_not_allowed("GET")
    if (refusal := _refusal(request)) is not None:
        return refusal
    return JsonResponse(
        {
            "object": "list",
            "data": [
                {"id": model_id, "object": "model", "created": 0, "owned_by": "buddy-local"}
                for model_id in await _model_ids()
            ],
        }
    )
