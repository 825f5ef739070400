"""Per-key limits at the gateway over real HTTP: the same `429 rate_limit_exceeded` as the lookup,
OpenAI's `x-ratelimit-*` headers, the table's order (`model_mismatch` first), and the tokens of
each completion counted against the key's TPM limit when it ends. The hammer: one key with
`rate_limit_rpm=30`, several threads, the lookup endpoint on several gunicorn workers *and* the
gateway on several uvicorn workers, for one minute: at most 31 answers 200."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from buddy.accounts.services import service_token_create
from gateway.usage import tokens_of, usage_stream
from keys.services import key_roll, key_update
from tests.harness.processes import buddy_server
from tests.harness.wait import wait_until

CHAT = {"model": "gemma4:26b", "messages": [{"role": "user", "content": "hello"}]}


def post(buddy_url: str, body: object, secret: str) -> httpx.Response:
    return httpx.post(
        f"{buddy_url}/v1/chat/completions",
        content=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def code_of(response: httpx.Response) -> str | None:
    return None if response.status_code == 200 else response.json()["error"]["code"]


def test_a_key_over_its_rpm_limit_gets_429_with_retry_after_and_ratelimit_headers(
    buddy_url, upstream, deploy
):
    deployed = deploy(f"{upstream.url}/ok")
    key_update(key_id=deployed.default_key_id, actor="t", rate_limit_rpm=2)
    answers = [post(buddy_url, CHAT, deployed.secret) for _ in range(2)]
    assert [r.status_code for r in answers] == [200, 200]
    assert [r.headers["x-ratelimit-limit-requests"] for r in answers] == ["2", "2"]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["1", "0"]
    assert "x-ratelimit-limit-tokens" not in answers[0].headers
    refused = post(buddy_url, CHAT, deployed.secret)
    assert (refused.status_code, code_of(refused)) == (429, "rate_limit_exceeded")
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    # The table's order: a wrong model is model_mismatch even over the limit.
    wrong = post(buddy_url, {**CHAT, "model": "qwen3.6:27b"}, deployed.secret)
    assert (wrong.status_code, code_of(wrong)) == (400, "model_mismatch")
    assert len(upstream.requests) == 2


def test_a_request_refused_for_its_model_is_not_counted(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    key_update(key_id=deployed.default_key_id, actor="t", rate_limit_rpm=1)
    for _ in range(3):
        assert code_of(post(buddy_url, {**CHAT, "model": "qwen3.6:27b"}, deployed.secret)) == (
            "model_mismatch"
        )
    assert post(buddy_url, CHAT, deployed.secret).status_code == 200
    assert code_of(post(buddy_url, CHAT, deployed.secret)) == "rate_limit_exceeded"


def test_a_stream_gets_the_headers_and_its_rechecks_are_not_counted(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    key_update(key_id=deployed.default_key_id, actor="t", rate_limit_rpm=2)
    response = post(buddy_url, {**CHAT, "stream": True}, deployed.secret)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-remaining-requests"] == "1"
    assert post(buddy_url, CHAT, deployed.secret).status_code == 200
    assert code_of(post(buddy_url, CHAT, deployed.secret)) == "rate_limit_exceeded"


def test_the_tokens_of_each_completion_count_against_the_tpm_limit(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")  # each completion reports total_tokens 7
    key_update(key_id=deployed.default_key_id, actor="t", rate_limit_tpm=10)
    first = post(buddy_url, CHAT, deployed.secret)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "10"
    assert first.headers["x-ratelimit-remaining-tokens"] == "10"
    assert "x-ratelimit-limit-requests" not in first.headers

    def remaining_after_first() -> bool:
        # Tokens are added when the request has ended, just after its answer is sent.
        left = httpx.get(
            f"{buddy_url}/v1/models", headers={"Authorization": f"Bearer {deployed.secret}"}
        ).headers.get("x-ratelimit-remaining-tokens")
        return left == "3"

    wait_until(remaining_after_first, timeout=10, what="the first completion's 7 tokens")
    assert post(buddy_url, CHAT, deployed.secret).status_code == 200  # 3 tokens left: allowed

    def refused() -> bool:
        return code_of(post(buddy_url, CHAT, deployed.secret)) == "rate_limit_exceeded"

    wait_until(refused, timeout=10, what="14 tokens of 10 to refuse the next request")


def test_a_patch_applies_to_the_next_request_through_a_warm_gateway(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    assert [post(buddy_url, CHAT, deployed.secret).status_code for _ in range(3)] == [200] * 3
    key_update(key_id=deployed.default_key_id, actor="t", rate_limit_rpm=1)
    assert post(buddy_url, CHAT, deployed.secret).status_code == 200
    assert code_of(post(buddy_url, CHAT, deployed.secret)) == "rate_limit_exceeded"


def test_a_roll_stops_the_old_key_at_the_gateway_when_its_grace_has_passed(
    buddy_url, upstream, deploy
):
    deployed = deploy(f"{upstream.url}/ok")
    assert post(buddy_url, CHAT, deployed.secret).status_code == 200  # warm
    started = time.monotonic()
    _new, new_secret = key_roll(key_id=deployed.default_key_id, actor="t", grace_seconds=3)
    assert post(buddy_url, CHAT, new_secret).status_code == 200
    if time.monotonic() - started < 2.5:  # still well inside the grace on a loaded machine
        assert post(buddy_url, CHAT, deployed.secret).status_code == 200
    wait_until(
        lambda: code_of(post(buddy_url, CHAT, deployed.secret)) == "expired_api_key",
        timeout=20,
        interval=0.2,
        what="the old key to expire when its grace has passed",
    )
    assert time.monotonic() - started >= 2.9
    assert post(buddy_url, CHAT, new_secret).status_code == 200
    _newer, newer_secret = key_roll(key_id=_new.pk, actor="t", grace_seconds=0)
    assert code_of(post(buddy_url, CHAT, new_secret)) == "expired_api_key"  # grace 0: at once
    assert post(buddy_url, CHAT, newer_secret).status_code == 200


def test_the_tokens_a_tpm_window_counts_are_the_usage_a_completion_or_stream_shows():
    # The gateway adds `prompt_tokens + completion_tokens` of what `gateway.usage` read.
    usage = {"usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}}
    event = f"data: {json.dumps({'choices': [], **usage})}\n\n".encode()
    stream = usage_stream({"stream": True, "stream_options": {"include_usage": True}})
    stream.feed(b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n' + event[:20])
    assert stream.prompt_tokens + stream.completion_tokens == 0
    stream.feed(event[20:] + b"data: [DONE]\n\n")
    stream.end()
    assert stream.prompt_tokens + stream.completion_tokens == 11
    assert tokens_of({"usage": {"prompt_tokens": 4, "completion_tokens": 5}}) == (4, 5)
    assert tokens_of({"usage": None}) is None
    assert tokens_of("not an answer") is None


# --- the hammer --------------------------------------------------------------------------------

HAMMER_SECONDS = 60.0  # the check: a whole minute, the limit's own window


@pytest.mark.timeout(300)
def test_one_key_hammered_through_gunicorn_workers_and_the_gateway_for_a_minute_gets_at_most_31(
    buddy_url, upstream, deploy
):
    deployed = deploy(f"{upstream.url}/ok")
    key_update(key_id=deployed.default_key_id, actor="t", rate_limit_rpm=30)
    _token, service_token = service_token_create(name="hammer", role="proxy")
    statuses: list[tuple[str, int, str | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def through_lookup(base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    "/internal/v1/auth/lookup",
                    json={"authorization": f"Bearer {deployed.secret}"},
                    headers={"Authorization": f"Bearer {service_token}"},
                )
                with lock:
                    statuses.append(("lookup", response.status_code, code_of(response)))
                stop.wait(0.02)  # pace the load: the box is shared

    def through_gateway() -> None:
        with httpx.Client(base_url=buddy_url, timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    "/v1/chat/completions",
                    json=CHAT,
                    headers={"Authorization": f"Bearer {deployed.secret}"},
                )
                with lock:
                    statuses.append(("gateway", response.status_code, code_of(response)))
                stop.wait(0.02)

    with buddy_server("gunicorn", workers=3) as lookup_url:
        threads = [threading.Thread(target=through_lookup, args=(lookup_url,)) for _ in range(3)]
        threads += [threading.Thread(target=through_gateway) for _ in range(3)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        stop.wait(HAMMER_SECONDS)
        stop.set()
        for thread in threads:
            thread.join(30)
        elapsed = time.monotonic() - started

    ok = [s for s in statuses if s[1] == 200]
    refused = [s for s in statuses if s[1] != 200]
    assert elapsed >= HAMMER_SECONDS
    assert {(status, code) for _, status, code in refused} == {(429, "rate_limit_exceeded")}
    assert 30 <= len(ok) <= 31, (len(ok), len(statuses))
    assert {via for via, _, _ in ok} <= {"lookup", "gateway"}
    assert len({via for via, _, _ in statuses}) == 2  # both paths were hammered
