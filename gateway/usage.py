"""What the gateway records of each completion it relays (README "Usage"): one request and the
upstream's token counts, for the key and its deployment, into the process's usage buffer
(`buddy.usage.buffer`: no I/O on the request path), and the tokens into a Prometheus counter.

Streams: the gateway asks the upstream for usage (`stream_options.include_usage`, as OpenAI and
vLLM define it: a last chunk with empty `choices` and `usage`) and reads it from the stream as it
passes; when the client did not ask for usage itself, that chunk is not sent on (nor the
`"usage": null` member some upstreams then add to every chunk), so the client's stream is what
it would have been without the gateway asking. A stream that ends without usage (cut off, or an
upstream that ignores the option) counts the request and no tokens.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from prometheus_client import Counter

from buddy.core.conf import per_settings
from buddy.ops.metrics import PROCESS_REGISTRY
from buddy.usage.buffer import recorder
from keys.lookup.outcomes import KeySnapshot

TOKENS = Counter(
    "buddy_gateway_tokens",
    "Tokens of the completions the gateway relayed, by kind (prompt, completion).",
    ["kind"],
    registry=PROCESS_REGISTRY,
)
_PROMPT = TOKENS.labels(kind="prompt")
_COMPLETION = TOKENS.labels(kind="completion")


@per_settings
def _recording() -> bool:
    return bool(settings.BUDDY_USAGE_RECORDING)


def record_completion_usage(
    snapshot: KeySnapshot, prompt_tokens: int, completion_tokens: int
) -> None:
    """THE place where the gateway learns a relayed completion's usage (upstream 2xx): one
    request and its tokens for the key and its deployment. No I/O: a dict update under a lock
    and two in-memory counters."""
    if snapshot.deployment_id is None or not _recording():
        return
    recorder.record(snapshot.key_id, snapshot.deployment_id, prompt_tokens, completion_tokens)
    if prompt_tokens:
        _PROMPT.inc(prompt_tokens)
    if completion_tokens:
        _COMPLETION.inc(completion_tokens)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def tokens_of(answer: object) -> tuple[int, int] | None:
    """(prompt, completion) tokens of an answer's `usage` object, or None if it has none."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return None
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def client_wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def with_usage_requested(body: dict[str, Any]) -> dict[str, Any]:
    """The body sent upstream for a stream: the client's, with `stream_options.include_usage`
    (the client's as it is while recording is off)."""
    if client_wants_usage(body) or not _recording():
        return body
    options = body.get("stream_options")
    return {**body, "stream_options": {**(options or {}), "include_usage": True}}


def usage_stream(body: dict[str, Any]) -> UsageStream:
    """The reader of a stream relayed for `body` (it keeps the usage chunk when the client asked
    for it, or when recording is off and the gateway did not ask)."""
    return UsageStream(keep_usage=client_wants_usage(body) or not _recording())


_SEPARATORS = (b"\n\n", b"\r\r", b"\r\n\r\n")
_LF = (b"\n\n",)
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null|"usage"\s*:\s*null\s*,?\s*')
_MARK = b'"usage"'


def _last_end(data: bytes) -> int:
    """Where the last whole event in `data` ends, or -1."""
    separators = _SEPARATORS if b"\r" in data else _LF
    ends = [e + len(sep) for sep in separators if (e := data.rfind(sep)) >= 0]
    return max(ends, default=-1)


class UsageStream:
    """Reads the usage of a relayed server-sent-event stream as it passes, and takes out of it
    what the client did not ask for. `feed` each piece from the upstream and send what it
    returns; `end` at the end. Whole events are passed on byte for byte; only events that name
    `usage` are looked into (a piece that ends an event and does not name it goes straight on)."""

    __slots__ = ("completion_tokens", "keep_usage", "pending", "prompt_tokens", "reported")

    def __init__(self, *, keep_usage: bool) -> None:
        self.keep_usage = keep_usage
        self.pending = b""
        self.reported = False
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def feed(self, piece: bytes) -> bytes:
        data = self.pending + piece if self.pending else piece
        if data[-2:] == b"\n\n":  # the usual piece: whole events
            self.pending = b""
            whole = data
        else:
            end = _last_end(data)
            if end < 0:  # no event ends in what we have yet
                self.pending = data
                return b""
            whole, self.pending = data[:end], data[end:]
        at = whole.find(_MARK)
        return whole if at < 0 else self._events_naming_usage(whole, at)

    def _events_naming_usage(self, whole: bytes, at: int) -> bytes:
        """`whole` (whole events) with each event that names usage (the first at `at`) read and
        passed through `_event`; the events around them are passed on untouched, unparsed."""
        separators = _SEPARATORS if b"\r" in whole else _LF
        out: list[bytes] = []
        start = 0
        while at >= 0:
            starts = [e + len(sep) for sep in separators if (e := whole.rfind(sep, start, at)) >= 0]
            ends = [e + len(sep) for sep in separators if (e := whole.find(sep, at)) >= 0]
            event_start, event_end = max([start, *starts]), min(ends, default=len(whole))
            out.append(whole[start:event_start])
            out.append(self._event(whole[event_start:event_end]))
            start = event_end
            at = whole.find(_MARK, start)
        out.append(whole[start:])
        return b"".join(out)

    def end(self) -> bytes:
        """What is left at the end of the stream (an event without its blank line)."""
        rest, self.pending = self.pending, b""
        return self._event(rest) if _MARK in rest else rest

    def _event(self, event: bytes) -> bytes:
        if _MARK not in event:
            return event
        payload = b"\n".join(
            line[5:].removeprefix(b" ") for line in event.splitlines() if line.startswith(b"data:")
        )
        try:
            chunk = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return event
        if not isinstance(chunk, dict) or "usage" not in chunk:
            return event
        tokens = tokens_of(chunk)
        if tokens is not None:
            self.reported = True
            self.prompt_tokens, self.completion_tokens = tokens
        if self.keep_usage:
            return event
        if tokens is None:  # `"usage": null`, added to every chunk by some upstreams once asked
            return _NULL_USAGE.sub(b"", event, count=1)
        if not chunk.get("choices"):
            return b""  # the usage chunk the client did not ask for
        # Usage riding on a chunk with content (not OpenAI's way): that chunk, without it.
        del chunk["usage"]
        tail = event[len(event.rstrip(b"\r\n")) :]
        return b"data: " + json.dumps(chunk).encode() + tail
