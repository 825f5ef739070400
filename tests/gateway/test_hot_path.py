"""The gateway's own ASGI app over real HTTP: the key before the body, the body's cap, deep JSON,
streams that re-check their key and have a total cap, request ids, and `/v1` under WSGI."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from deployments.services import deployment_stop
from keys.services import key_revoke
from tests.gateway.test_gateway import CHAT, error_of, post, sse_events
from tests.harness.processes import buddy_server
from tests.harness.wait import wait_until

RECHECK_SECONDS = 0.5
MAX_STREAM_SECONDS = 4.0
SMALL_CAP = 64 * 1024


@pytest.fixture(scope="module")
def tight_url(django_db_setup, django_db_blocker) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """buddy under uvicorn with a short stream re-check, a short stream cap and a small body cap."""
    with buddy_server(
        "uvicorn",
        BUDDY_STREAM_RECHECK_SECONDS=str(RECHECK_SECONDS),
        BUDDY_STREAM_MAX_SECONDS=str(MAX_STREAM_SECONDS),
        BUDDY_GATEWAY_MAX_BODY_BYTES=str(SMALL_CAP),
    ) as url:
        yield url


def raw_exchange(base_url: str, head: str, timeout: float = 10) -> bytes:
    """Send `head` (request line and headers) and nothing more; what the server answers before
    the body it was promised. A server that waited for that body would time out here."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        received = b""
        while b"\r\n\r\n" not in received or not _complete(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    match = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    return match is not None and len(body) >= int(match.group(1))


def status_and_code(received: bytes) -> tuple[int, str]:
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]["code"]


def promised_body_head(base_url: str, authorization: str | None, length: int) -> str:
    host = urlsplit(base_url).netloc
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )


# --- the key before the body ----------------------------------------------------------------------


def test_no_key_is_refused_without_reading_the_body(buddy_url):
    received = raw_exchange(buddy_url, promised_body_head(buddy_url, None, 1_000_000))
    assert status_and_code(received) == (400, "missing_api_key")


def test_a_malformed_key_is_refused_without_reading_the_body(buddy_url):
    received = raw_exchange(buddy_url, promised_body_head(buddy_url, "Bearer ob_sk_nope", 1000))
    assert status_and_code(received) == (401, "invalid_api_key")
    assert b'www-authenticate: Bearer realm="buddy"' in received.lower().replace(
        b"bearer", b"Bearer"
    )


def test_a_revoked_key_is_refused_without_reading_the_body(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    key_revoke(key_id=deployed.default_key_id, actor="test")
    head = promised_body_head(buddy_url, f"Bearer {deployed.secret}", 5000)
    assert status_and_code(raw_exchange(buddy_url, head)) == (401, "revoked_api_key")
    assert upstream.requests == []


def test_deep_json_without_a_key_is_the_keys_refusal_not_a_500(buddy_url):
    response = post(buddy_url, "[" * 100_000, None)
    assert response.status_code == 400
    assert error_of(response)["code"] == "missing_api_key"


# --- the body ----------------------------------------------------------------------------------------


def test_deep_json_with_a_valid_key_is_400_invalid_json(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    for body in ("[" * 100_000, '{"a":' * 100_000, "[" * 100_000 + "]" * 100_000):
        response = post(buddy_url, body, deployed.secret)
        assert response.status_code == 400, body[:10]
        assert error_of(response)["code"] == "invalid_json"
    assert upstream.requests == []


def test_a_declared_length_over_the_cap_is_413_before_the_body_is_read(tight_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    head = promised_body_head(tight_url, f"Bearer {deployed.secret}", SMALL_CAP + 1)
    assert status_and_code(raw_exchange(tight_url, head)) == (413, "request_too_large")


def test_a_streamed_body_over_the_cap_is_413(tight_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"model": "gemma4:26b", "messages": [{"role": "user", "content": "'
        for _ in range(SMALL_CAP // 1024 + 1):
            yield b"x" * 1024
        yield b'"}]}'

    response = httpx.post(
        f"{tight_url}/v1/chat/completions",
        content=chunks(),
        headers={"Authorization": f"Bearer {deployed.secret}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    assert upstream.requests == []


def test_a_body_under_the_cap_is_relayed(tight_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    text = "y" * (SMALL_CAP - 200)
    chat = {**CHAT, "messages": [{"role": "user", "content": text}]}
    response = post(tight_url, chat, deployed.secret)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == f"upstream says: {text}"


def test_the_default_cap_takes_a_2_5_mb_body_and_refuses_5_mb(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    text = "z" * 2_500_000
    chat = {**CHAT, "messages": [{"role": "user", "content": text}]}
    assert post(buddy_url, chat, deployed.secret).status_code == 200
    huge = {**CHAT, "messages": [{"role": "user", "content": "z" * 5_000_000}]}
    response = post(buddy_url, huge, deployed.secret)
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_a_wrong_model_is_judged_after_the_body_is_read(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    response = post(buddy_url, {**CHAT, "model": "qwen3.6:27b"}, deployed.secret)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("model_mismatch", "model")
    # ...and a revoked key with a wrong model is still the key's refusal (the contract's order).
    key_revoke(key_id=deployed.default_key_id, actor="test")
    response = post(buddy_url, {**CHAT, "model": "qwen3.6:27b"}, deployed.secret)
    assert (response.status_code, error_of(response)["code"]) == (401, "revoked_api_key")


# --- streams -------------------------------------------------------------------------------------


def open_stream(url: str, secret: str) -> contextlib.AbstractContextManager[httpx.Response]:
    return httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def _stream_until_it_ends(url: str, secret: str, during: object = None) -> tuple[list[str], float]:
    """Stream a completion; once its first chunk arrived, run `during()`; the events, and the
    seconds from `during()` to the stream's end."""
    with open_stream(url, secret) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        if callable(during):
            during()
        started = time.monotonic()
        events = sse_events(list(lines))
        return events, time.monotonic() - started


@pytest.mark.parametrize("mode", ["drip", "hangs"])  # hangs: one chunk, then silence
def test_a_key_revoked_mid_stream_ends_the_stream_within_the_recheck_interval(
    tight_url, upstream, deploy, mode
):
    deployed = deploy(f"{upstream.url}/{mode}")
    events, cut_off = _stream_until_it_ends(
        tight_url,
        deployed.secret,
        lambda: key_revoke(key_id=deployed.default_key_id, actor="test"),
    )
    assert json.loads(events[-1])["error"]["code"] == "revoked_api_key"
    assert all("choices" in json.loads(event) for event in events[:-1])
    print(f"{mode}: revoke -> end of stream {cut_off:.3f} s (re-check every {RECHECK_SECONDS} s)")
    assert cut_off < RECHECK_SECONDS + 1.0, f"cut off {cut_off:.2f} s after the revoke"
    wait_until(upstream.disconnected.is_set, timeout=10, what="the upstream to be closed")


def test_a_deployment_stopped_mid_stream_ends_it_with_the_deployments_code(
    tight_url, upstream, deploy
):
    deployed = deploy(f"{upstream.url}/drip")
    events, cut_off = _stream_until_it_ends(
        tight_url,
        deployed.secret,
        lambda: deployment_stop(deployment_id=deployed.deployment.pk, actor="test"),
    )
    code = json.loads(events[-1])["error"]["code"]
    # Stopping revokes the keys in the same transaction once issue 12 has landed; before, 409.
    assert code in {"deployment_stopped", "revoked_api_key"}
    assert cut_off < RECHECK_SECONDS + 1.0


def test_a_stream_ends_at_its_total_cap_with_an_error_event(tight_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/drip")
    started = time.monotonic()
    events, _ = _stream_until_it_ends(tight_url, deployed.secret)
    lasted = time.monotonic() - started
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_timeout"
    assert "time limit" in error["message"]
    assert len(events) > 10  # it did stream until then
    assert MAX_STREAM_SECONDS - 0.5 < lasted < MAX_STREAM_SECONDS + 2


def test_a_live_key_keeps_streaming_across_rechecks(tight_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/drip")
    with open_stream(tight_url, deployed.secret) as response:
        started = time.monotonic()
        events = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
            if time.monotonic() - started > RECHECK_SECONDS * 3:
                break
    assert len(events) > 10
    assert all("choices" in event for event in events), "a live key's stream was cut"


# --- what Django's middleware gave /v1 --------------------------------------------------------------


def test_gateway_answers_carry_the_request_id(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    response = httpx.post(
        f"{buddy_url}/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {deployed.secret}", "X-Request-ID": "edge-42.a"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "edge-42.a"
    refused = post(buddy_url, CHAT, None)
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"])
    assert refused.headers["x-content-type-options"] == "nosniff"


def test_an_unknown_gateway_path_is_404_and_a_wrong_host_400(buddy_url):
    response = httpx.get(f"{buddy_url}/v1/embeddings")
    assert (response.status_code, error_of(response)["code"]) == (404, "not_found")
    response = httpx.get(f"{buddy_url}/v1/models", headers={"Host": "evil.example"})
    assert (response.status_code, error_of(response)["code"]) == (400, "bad_request")


def test_v1_under_wsgi_answers_the_same_way(django_db_setup, django_db_blocker, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    with buddy_server("gunicorn", workers=1) as url:
        response = post(url, CHAT, deployed.secret)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "upstream says: hello"
        refused = post(url, "[" * 100_000, None)
        assert (refused.status_code, error_of(refused)["code"]) == (400, "missing_api_key")
        streamed = post(url, {**CHAT, "stream": True}, deployed.secret)
        assert sse_events(streamed.text.splitlines())[-1] == "[DONE]"
