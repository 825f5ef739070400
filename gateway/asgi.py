"""The OpenAI-compatible gateway, `POST /v1/chat/completions` and `GET /v1/models`, as its own small
ASGI application (mounted beside Django by `buddy.asgi`).

Every chat request of the fleet comes through here, so none of what a browser needs runs on it
(sessions, CSRF, users, messages, Django's per-request thread for sync middleware): the request is
served by native coroutines end to end. A cached key is looked up in one Redis round trip on the
event loop (`keys.lookup.aio`); only a miss (the ORM, one argon2 verify) goes to the
loop's thread pool. Model servers are called through keep-alive connections pooled per event loop
(`gateway.upstream`, `gateway.client`). What Django's middleware gave `/v1` is kept here,
cheaply: the request id (`X-Request-ID`, on every log line), one access line per request, the
lookup's metrics, the `ALLOWED_HOSTS` check, the security headers, and the contract's JSON error
body for anything that goes wrong (a 500 included).

Order of answers (the first that applies answers):
1. 404 `not_found` for another path, 405 `method_not_allowed` for another method;
2. the key, from the `Authorization` header alone, before any of the body is read: the lookup's
   table (`missing_api_key`, `invalid_api_key`, `rate_limited`, `revoked_api_key`,
   `expired_api_key`, 404, 409);
3. 413 `request_too_large`: a `Content-Length` over `BUDDY_GATEWAY_MAX_BODY_BYTES` before the
   body is read, or a body that grows past it while read (never held whole beyond the limit);
4. 400 `invalid_json` (not JSON, not an object, or nested too deep to parse);
5. 400 `model_mismatch` (`param: "model"`) for a `model` that is not the key's deployment's;
6. 429 `rate_limit_exceeded` (with `Retry-After`) for a key over its RPM or TPM limit (counted
   by the lookup; a request refused by 5. is not counted);
7. 400 `validation_error` (`gateway.validation`);
8. the upstream: its answer, or 502 `upstream_error`, 504 `upstream_timeout`, or its refusal
   relayed (400 `upstream_rejected`, 429 `upstream_rate_limited`).
A key with limits gets OpenAI's `x-ratelimit-limit-requests`/`-remaining-requests` (RPM) and
`x-ratelimit-limit-tokens`/`-remaining-tokens` (TPM) on its 200s and its 429; a request's tokens
(the upstream's `usage`, or the last usage chunk a stream shows) are added to the key's TPM window
when it ends (`keys.lookup.ratelimit.tokens_spent`), only for a key with a TPM limit.
So no one without a valid key gets the body read or learns anything about it, and nothing reaches
a model server that fails validation.

Usage (README "Usage"): a completion relayed with an upstream 2xx is recorded by
`gateway.usage.record_completion_usage` (in the process, no I/O); a stream asks its upstream for
usage and reads it as it passes (`gateway.usage.UsageStream`), taking the usage chunk out when the
client did not ask for it.

A stream, once started, has sent its status: what ends it early is an SSE error event
(`data: {"error": ...}`). The key is looked up again at most every `BUDDY_STREAM_RECHECK_SECONDS`
(one Redis round trip on a hit), and the stream ends with the lookup's refusal (`revoked_api_key`,
or the deployment's 409 code) once the key or its deployment no longer qualifies; after
`BUDDY_STREAM_MAX_SECONDS` it ends with `upstream_timeout`. A client that goes away closes the
upstream at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host

from buddy.core import errors
from buddy.core.conf import per_settings
from buddy.core.errors import DomainError, ErrorEntry
from buddy.http.errors import error_body, error_json
from buddy.http.request_id import HEADER, bind_request_id, log_access, unbind_request_id
from buddy.ops.metrics import record_lookup
from deployments.selectors import deployment_get
from gateway import upstream
from gateway.client import Response
from gateway.usage import (
    UsageStream,
    record_completion_usage,
    tokens_of,
    usage_stream,
    with_usage_requested,
)
from gateway.validation import parse_json_object, validate_chat_request
from keys.lookup import ratelimit
from keys.lookup.aio import key_lookup_async
from keys.lookup.outcomes import KeySnapshot, LookupOutcome, LookupResult

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_REQUEST_ID_HEADER = HEADER.lower().encode()
_JSON = b"application/json"


class ClientGone(Exception):
    """The client went away before its request was read."""


class StreamTooLong(DomainError):
    entry = errors.UPSTREAM_TIMEOUT


def client_address(scope: Scope, headers: dict[bytes, bytes]) -> str | None:
    """The client's address: THE one place it is computed (for the lookup's `client_ip`).

    As DRF's throttles see it (`REST_FRAMEWORK["NUM_PROXIES"]`, `BUDDY_NUM_PROXIES`): with no
    proxy in front, the peer's address; behind N proxies, the N-th address from the right of
    `X-Forwarded-For` (what the nearest proxy we trust was told).
    """
    num_proxies = _conf().num_proxies
    forwarded = headers.get(b"x-forwarded-for")
    if num_proxies and forwarded:
        addresses = [a.strip() for a in forwarded.decode("latin-1").split(",")]
        return addresses[-min(num_proxies, len(addresses))] or None
    client = scope.get("client")
    return client[0] if client else None


class _Conf:
    """What the gateway reads of the settings on every request, read once per process (and again
    after `setting_changed`: `buddy.core.conf.per_settings`)."""

    def __init__(self) -> None:
        self.num_proxies: int = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
        self.use_x_forwarded_host: bool = settings.USE_X_FORWARDED_HOST
        self.max_body: int = settings.BUDDY_GATEWAY_MAX_BODY_BYTES
        allowed_hosts = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed_hosts:
            allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
        self.allowed_hosts: list[str] = list(allowed_hosts)
        self.static_headers = _security_headers()
        # `ALLOWED_HOSTS`, as Django's `request.get_host()` enforces it, judged once per Host
        # value (bounded); forgotten with the rest when a setting changes.
        self.hosts: dict[bytes, bool] = {}

    def host_allowed(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        host = headers.get(b"host", b"")
        if self.use_x_forwarded_host and b"x-forwarded-host" in headers:
            host = headers[b"x-forwarded-host"]
        if not host and scope.get("server"):  # no Host header: the server's name, as Django does
            host = str(scope["server"][0]).encode()
        found = self.hosts.get(host)
        if found is None:
            domain, _port = split_domain_port(host.decode("latin-1"))
            found = bool(domain) and validate_host(domain, self.allowed_hosts)
            if len(self.hosts) < 256:
                self.hosts[host] = found
        return found


@per_settings
def _conf() -> _Conf:
    return _Conf()


def _security_headers() -> list[tuple[bytes, bytes]]:
    """Of what Django's SecurityMiddleware puts on every answer, what a JSON API's answer needs
    (`nosniff`; the frame, referrer and opener policies are for pages a browser renders, and each
    header costs the server per answer)."""
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        return [(b"x-content-type-options", b"nosniff")]
    return []


class Exchange:
    """One request and its answer: what was asked, and what has been sent back so far."""

    __slots__ = ("_send", "headers", "receive", "request_id", "scope", "started", "status")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self._send = send
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self.request_id = ""
        self.status = 0  # 0 until the answer has started
        self.started = False

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    async def start(
        self, status: int, content_type: bytes, extra: dict[str, str], length: int = -1
    ) -> None:
        headers = [
            (b"content-type", content_type),
            (_REQUEST_ID_HEADER, self.request_id.encode()),
            *_conf().static_headers,
            *((name.encode(), value.encode("latin-1")) for name, value in extra.items()),
        ]
        if length >= 0:
            headers.append((b"content-length", str(length).encode()))
        self.status, self.started = status, True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, chunk: bytes, *, more: bool) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def answer(
        self, status: int, content: bytes, headers: dict[str, str] | None = None
    ) -> None:
        await self.start(status, _JSON, headers or {}, len(content))
        await self.body(content, more=False)

    async def error(
        self,
        entry: ErrorEntry,
        *,
        message: str | None = None,
        param: str | None = None,
        fields: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = error_body(entry, message=message, param=param, fields=fields)
        await self.answer(entry.status, json.dumps(body).encode(), headers)

    async def domain_error(self, exc: DomainError) -> None:
        await self.error(
            exc.entry, message=exc.message, fields=exc.fields, headers=dict(exc.headers)
        )

    async def read_body(self, limit: int) -> bytes | None:
        """The whole body, or None once it is known to be over `limit` bytes (from its
        Content-Length before reading anything, or counted while reading)."""
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


async def lookup(ex: Exchange, *, model: object = None, count: bool = True) -> LookupResult:
    return await key_lookup_async(
        authorization=ex.header(b"authorization"),
        model=model,
        client_ip=client_address(ex.scope, ex.headers),
        count=count,
    )


async def refuse(ex: Exchange, result: LookupResult) -> None:
    """The lookup's refusal, as the gateway answers it (OpenAI's habits: `param` names the model,
    a 401 says how to authenticate, a 429 when to retry, with the key's `x-ratelimit-*`)."""
    outcome = result.outcome
    assert outcome.error is not None, "a refusal has an error"
    headers: dict[str, str] = {}
    if outcome.status == 429 and result.retry_after is not None:
        headers["Retry-After"] = str(result.retry_after)
    if outcome is LookupOutcome.RATE_LIMIT_EXCEEDED:
        headers.update(ratelimit.headers(result.snapshot, result.rate))
    if outcome.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="buddy"'
    await ex.error(
        outcome.error,
        param="model" if outcome is LookupOutcome.MODEL_MISMATCH else None,
        headers=headers,
    )


def sse_error(failure: DomainError) -> bytes:
    """An error after the stream has started: the status is sent, so it goes in an event (the
    OpenAI SDKs raise an APIError for a `data:` event that carries `error`)."""
    return b"data: " + error_json(failure.entry, message=failure.message) + b"\n\n"


class StreamWatch:
    """Beside a relayed stream: ends it when its client goes away, when its key or deployment no
    longer qualifies (looked up again every `BUDDY_STREAM_RECHECK_SECONDS`), or when it has lasted
    `BUDDY_STREAM_MAX_SECONDS`, by closing the upstream (which ends the relay's loop)."""

    def __init__(self, ex: Exchange, response: Response, model: str) -> None:
        self.ex = ex
        self.response = response
        self.model = model
        self.stop: DomainError | None = None
        self.client_gone = False

    async def run(self) -> None:
        recheck = settings.BUDDY_STREAM_RECHECK_SECONDS
        deadline = time.monotonic() + settings.BUDDY_STREAM_MAX_SECONDS
        disconnected = asyncio.ensure_future(self._disconnect())
        try:
            while True:
                wait = max(0.0, min(recheck, deadline - time.monotonic()))
                done, _ = await asyncio.wait({disconnected}, timeout=wait)
                if done:
                    self.client_gone = True
                    break
                if time.monotonic() >= deadline:
                    limit = settings.BUDDY_STREAM_MAX_SECONDS
                    self.stop = StreamTooLong(f"The stream reached its time limit ({limit:g} s).")
                    break
                # A recheck is the same request, not another: it is not counted.
                result = await lookup(self.ex, model=self.model, count=False)
                if not result.ok:
                    assert result.outcome.error is not None
                    self.stop = DomainError(entry=result.outcome.error)
                    logger.info("stream ended: its key now answers %s", result.outcome.code)
                    break
        finally:
            disconnected.cancel()
            self.response.close()

    async def _disconnect(self) -> None:
        while (await self.ex.receive())["type"] != "http.disconnect":
            pass


async def tokens_spent(snapshot: KeySnapshot, tokens: int) -> None:
    """A relayed completion's tokens, counted in its key's TPM window (a key with a TPM limit
    only: the others need no count). With `record_completion_usage`, what the gateway does with
    a completion's usage."""
    if snapshot.rate_limit_tpm is not None and tokens > 0:
        await ratelimit.atokens_spent(public_id=snapshot.public_id, tokens=tokens)


async def relay(
    ex: Exchange,
    response: Response,
    snapshot: KeySnapshot,
    model: str,
    usage: UsageStream,
    extra_headers: dict[str, str],
) -> None:
    """The upstream's bytes as they arrive, never gathered (only the usage the client did not
    ask for is taken out: `gateway.usage`); closes the upstream however it ends, and records the
    request with the usage the stream reported (none if it was cut off first)."""
    content_type = response.headers.get("Content-Type") or "text/event-stream"
    await ex.start(200, content_type.encode("latin-1"), {**SSE_HEADERS, **extra_headers})
    watch = StreamWatch(ex, response, model)
    watcher = asyncio.ensure_future(watch.run())
    failure: DomainError | None = None
    try:
        async for chunk in response.iter_any():
            if watch.stop is not None or watch.client_gone:
                break
            passed = usage.feed(chunk)
            if passed:
                await ex.body(passed, more=True)
    except upstream.TRANSPORT_ERRORS as exc:
        if watch.stop is None and not watch.client_gone:
            logger.warning("upstream stream broke off: %s", type(exc).__name__)
            failure = upstream.transport_failure(exc)
    except OSError:  # the client went away while we were writing to it
        watch.client_gone = True
    finally:
        watcher.cancel()
        response.close()
        rest = usage.end()
        record_completion_usage(snapshot, usage.prompt_tokens, usage.completion_tokens)
    await tokens_spent(snapshot, usage.prompt_tokens + usage.completion_tokens)
    failure = watch.stop or failure
    if watch.client_gone:
        return
    await ex.body(rest + (sse_error(failure) if failure is not None else b""), more=False)


async def chat_completions(ex: Exchange) -> None:
    if ex.scope["method"] != "POST":
        await ex.error(errors.METHOD_NOT_ALLOWED, headers={"Allow": "POST"})
        return
    started = time.perf_counter()
    result = await lookup(ex)
    # Over its limit, a key's request is still refused by `model_mismatch` first (the table's
    # order): the 429 waits for the body's model.
    over_limit = result.outcome is LookupOutcome.RATE_LIMIT_EXCEEDED
    if (not result.ok and not over_limit) or result.snapshot is None:
        record_lookup(result.outcome.code, time.perf_counter() - started)
        await refuse(ex, result)
        return
    snapshot = result.snapshot
    raw = await ex.read_body(_conf().max_body)
    if raw is None:
        record_lookup(result.outcome.code, time.perf_counter() - started)
        await ex.error(errors.REQUEST_TOO_LARGE, message="The request body is too large.")
        return
    try:
        body = parse_json_object(raw)
    except DomainError as exc:
        record_lookup(result.outcome.code, time.perf_counter() - started)
        await ex.domain_error(exc)
        return
    # The lookup ran without the model (it needs no body); its last row is judged here.
    model = body.get("model")
    if isinstance(model, str) and model != snapshot.model:
        result = LookupResult(LookupOutcome.MODEL_MISMATCH, snapshot, rate=result.rate)
        await ratelimit.asettle(result)  # a refused request does not count
        record_lookup(result.outcome.code, time.perf_counter() - started)
        await refuse(ex, result)
        return
    record_lookup(result.outcome.code, time.perf_counter() - started)
    if over_limit:
        await refuse(ex, result)
        return
    limit_headers = ratelimit.headers(snapshot, result.rate)
    try:
        chat = validate_chat_request(body)
    except DomainError as exc:
        await ex.domain_error(exc)
        return
    try:
        if not chat.stream:
            content, answer = await upstream.chat_completion(
                endpoint_url=snapshot.endpoint_url, body=chat.body
            )
            prompt_tokens, completion_tokens = tokens_of(answer) or (0, 0)
            record_completion_usage(snapshot, prompt_tokens, completion_tokens)
            await ex.answer(200, content, limit_headers)
            await tokens_spent(snapshot, prompt_tokens + completion_tokens)
            return
        response = await upstream.open_chat_stream(
            endpoint_url=snapshot.endpoint_url, body=with_usage_requested(chat.body)
        )
    except upstream.UpstreamFailure as exc:
        logger.warning(
            "upstream of deployment %s failed: %s %s",
            snapshot.deployment_id,
            exc.entry.status,
            exc.entry.code,
        )
        await ex.domain_error(exc)
        return
    await relay(ex, response, snapshot, chat.model, usage_stream(chat.body), limit_headers)


def _deployment_created_at(deployment_id: str) -> int:
    close_old_connections()
    try:
        deployment = deployment_get(deployment_id=deployment_id)
        return int(deployment.created_at.timestamp()) if deployment else 0
    finally:
        close_old_connections()


_created_at = sync_to_async(_deployment_created_at, thread_sensitive=False)


async def models(ex: Exchange) -> None:
    """The model the key's deployment serves (a key routes to exactly one)."""
    if ex.scope["method"] != "GET":
        await ex.error(errors.METHOD_NOT_ALLOWED, headers={"Allow": "GET"})
        return
    started = time.perf_counter()
    result = await lookup(ex)
    record_lookup(result.outcome.code, time.perf_counter() - started)
    if not result.ok or result.snapshot is None or result.snapshot.deployment_id is None:
        await refuse(ex, result)
        return
    created = await _created_at(result.snapshot.deployment_id)
    served = {"id": result.snapshot.model, "object": "model", "created": created}
    listing = {"object": "list", "data": [{**served, "owned_by": "buddy"}]}
    await ex.answer(
        200, json.dumps(listing).encode(), ratelimit.headers(result.snapshot, result.rate)
    )


_ROUTES = {CHAT_PATH: chat_completions, MODELS_PATH: models}


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    """The gateway's ASGI app (HTTP only; `buddy.asgi` routes `/v1/` here)."""
    started = time.perf_counter()
    ex = Exchange(scope, receive, send)
    ex.request_id, token = bind_request_id(ex.header(_REQUEST_ID_HEADER))
    try:
        handler = _ROUTES.get(scope["path"])
        if not _conf().host_allowed(scope, ex.headers):
            await ex.error(errors.BAD_REQUEST, message="Invalid Host header.")
        elif handler is None:
            await ex.error(errors.NOT_FOUND)
        else:
            await handler(ex)
    except ClientGone:
        ex.status = ex.status or 499  # nginx's "client closed request", for the access line
    except Exception:
        logger.exception("gateway: unhandled error")
        if not ex.started:
            await ex.error(errors.SERVER_ERROR)
    finally:
        log_access(scope["method"], scope["path"], ex.status or 500, started)
        unbind_request_id(token)
