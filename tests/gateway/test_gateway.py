"""The gateway over real HTTP: buddy under uvicorn (as deployed) in front of a fake model server."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from deployments.models import Deployment
from deployments.services import deployment_mark_provisioning, deployment_stop
from keys.services import key_revoke
from tests.harness.fakes import UPSTREAM_API_KEY, UPSTREAM_READ_TIMEOUT
from tests.harness.ports import free_port
from tests.harness.wait import wait_until

CHAT = {"model": "gemma4:26b", "messages": [{"role": "user", "content": "hello"}]}


def post(buddy_url: str, body: object, secret: str | None, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(
        f"{buddy_url}/v1/chat/completions",
        content=content,
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
        **kwargs,
    )


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "code", "param"} <= set(body["error"])
    return body["error"]


def sse_events(lines: list[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


# --- success ---------------------------------------------------------------------------------------


def test_completion_is_relayed_from_the_deployments_endpoint(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    response = post(buddy_url, CHAT, deployed.secret)
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "upstream says: hello"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert [r.path for r in upstream.requests] == ["/ok/v1/chat/completions"]
    assert upstream.requests[0].body == CHAT


def test_the_users_key_never_goes_upstream_and_buddys_credential_does(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    post(buddy_url, CHAT, deployed.secret, cookies={"sessionid": "x"})
    post(buddy_url, {**CHAT, "stream": True}, deployed.secret)
    assert len(upstream.requests) == 2
    for recorded in upstream.requests:
        assert recorded.headers["authorization"] == f"Bearer {UPSTREAM_API_KEY}"
        assert "cookie" not in recorded.headers
        sent = json.dumps(recorded.headers) + json.dumps(recorded.body)
        assert deployed.secret not in sent
        assert deployed.secret[:18] not in sent


def test_models_lists_the_keys_model(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    response = httpx.get(
        f"{buddy_url}/v1/models", headers={"Authorization": f"Bearer {deployed.secret}"}
    )
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["gemma4:26b"]
    assert upstream.requests == []


# --- streaming -----------------------------------------------------------------------------------


def test_stream_is_relayed_chunk_by_chunk_without_buffering(buddy_url, upstream, deploy):
    """The upstream sends its first chunk and then waits for the test: the client can only get
    that chunk before the upstream finishes if nothing between them gathers the answer."""
    deployed = deploy(f"{upstream.url}/gated")
    with httpx.stream(
        "POST",
        f"{buddy_url}/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"Authorization": f"Bearer {deployed.secret}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert not upstream.finished.is_set(), "the first chunk waited for the whole answer"
        assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["role"] == (
            "assistant"
        )
        upstream.release.set()
        events = sse_events(list(lines))
    assert upstream.finished.is_set()
    assert events[-1] == "[DONE]"
    words = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert words.strip() == "upstream says: hello"


def test_slow_answers_are_relayed_side_by_side_not_one_after_another(buddy_url, upstream, deploy):
    """Ten streams whose upstream is still answering are all under way at once in one server
    process: waiting on a model server ties up nothing that the next request needs."""
    deployed = deploy(f"{upstream.url}/gated")
    count = 10
    started = threading.Semaphore(0)

    def one_stream(_: int) -> list[str]:
        with httpx.stream(
            "POST",
            f"{buddy_url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"Authorization": f"Bearer {deployed.secret}"},
            timeout=30,
        ) as response:
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            started.release()
            return [first, *sse_events(list(lines))]

    with ThreadPoolExecutor(count) as pool:
        streams = [pool.submit(one_stream, i) for i in range(count)]
        for _ in range(count):
            assert started.acquire(timeout=UPSTREAM_READ_TIMEOUT - 1)
        assert not upstream.finished.is_set()
        upstream.release.set()
        results = [future.result(timeout=30) for future in streams]
    assert all(events[-1] == "[DONE]" for events in results)
    assert len(upstream.requests) == count


def test_a_client_that_goes_away_mid_stream_closes_the_upstream_request(
    buddy_url, upstream, deploy
):
    """A long generation nobody reads any more must not keep running on the model server."""
    deployed = deploy(f"{upstream.url}/hangs")
    with httpx.stream(
        "POST",
        f"{buddy_url}/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"Authorization": f"Bearer {deployed.secret}"},
        timeout=30,
    ) as response:
        assert next(line for line in response.iter_lines() if line.startswith("data: "))
    # Well before the gateway's read timeout would close it anyway.
    wait_until(
        upstream.disconnected.is_set,
        timeout=UPSTREAM_READ_TIMEOUT - 1,
        what="the upstream request to be closed",
    )


def test_an_upstream_that_breaks_mid_stream_ends_the_stream_with_an_error_event(
    buddy_url, upstream, deploy
):
    deployed = deploy(f"{upstream.url}/breaks")
    with httpx.stream(
        "POST",
        f"{buddy_url}/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"Authorization": f"Bearer {deployed.secret}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        events = sse_events(list(response.iter_lines()))
    assert json.loads(events[-1])["error"]["code"] == "upstream_error"


# --- errors of the contract ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_json"), (b"\xff\xfe", "invalid_json")],
)
def test_a_body_that_is_not_a_json_object_is_400_invalid_json(
    buddy_url, upstream, deploy, raw, code
):
    deployed = deploy(f"{upstream.url}/ok")
    response = post(buddy_url, raw, deployed.secret)
    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert upstream.requests == []


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Basic abc", "Token ob_sk_x"])
def test_no_bearer_key_is_400_missing_api_key(buddy_url, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.post(f"{buddy_url}/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "missing_api_key"


def test_a_malformed_key_is_401_invalid_api_key(buddy_url, transactional_db):
    response = post(buddy_url, CHAT, "ob_sk_" + "a" * 48)
    assert response.status_code == 401
    assert error_of(response) == {
        "message": "Invalid API key.",
        "type": "authentication_error",
        "code": "invalid_api_key",
        "param": None,
    }


def test_a_revoked_key_is_401_even_with_a_wrong_model(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    key_revoke(key_id=deployed.default_key_id, actor="test")
    response = post(buddy_url, {**CHAT, "model": "qwen3.6:27b"}, deployed.secret)
    assert response.status_code == 401
    assert error_of(response)["code"] == "revoked_api_key"
    assert upstream.requests == []


def test_a_key_whose_deployment_is_gone_is_404(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    Deployment.objects.filter(pk=deployed.deployment.pk).delete()
    response = post(buddy_url, CHAT, deployed.secret)
    assert response.status_code == 404
    assert error_of(response)["code"] == "deployment_not_found"


def test_a_restarting_deployment_is_409_and_answers_again_once_ready(buddy_url, upstream, deploy):
    from deployments.services import deployment_mark_ready

    deployed = deploy(f"{upstream.url}/ok")
    deployment_mark_provisioning(deployment_id=deployed.deployment.pk, actor="test")
    response = post(buddy_url, CHAT, deployed.secret)
    assert response.status_code == 409
    assert error_of(response)["code"] == "deployment_not_ready"
    deployment_mark_ready(
        deployment_id=deployed.deployment.pk, endpoint_url=f"{upstream.url}/ok", actor="test"
    )
    assert post(buddy_url, CHAT, deployed.secret).status_code == 200
    assert len(upstream.requests) == 1


def test_a_stopped_deployments_keys_are_401_revoked_at_once(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    deployment_stop(deployment_id=deployed.deployment.pk, actor="test")
    response = post(buddy_url, CHAT, deployed.secret)
    assert response.status_code == 401
    assert error_of(response)["code"] == "revoked_api_key"


def test_an_ended_pack_not_yet_swept_is_409_deployment_terminated(buddy_url, upstream, deploy):
    from datetime import timedelta

    from django.utils import timezone

    from deployments.models import Deployment

    deployed = deploy(f"{upstream.url}/ok")
    Deployment.objects.filter(pk=deployed.deployment.pk).update(
        pack_ends_at=timezone.now() - timedelta(seconds=1)
    )
    response = post(buddy_url, CHAT, deployed.secret)
    assert response.status_code == 409
    assert error_of(response)["code"] == "deployment_terminated"


def test_a_wrong_model_is_400_model_mismatch(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/ok")
    response = post(buddy_url, {**CHAT, "model": "qwen3.6:27b"}, deployed.secret)
    assert response.status_code == 400
    assert error_of(response)["code"] == "model_mismatch"
    assert error_of(response)["param"] == "model"
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": None}, "model"),
        ({"model": 7}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_an_invalid_body_is_400_with_its_param_and_never_reaches_the_upstream(
    buddy_url, upstream, deploy, change, param
):
    deployed = deploy(f"{upstream.url}/ok")
    body = {k: v for k, v in {**CHAT, **change}.items() if v is not None}
    response = post(buddy_url, body, deployed.secret)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "validation_error",
        param,
    )
    assert param in error["fields"]
    assert upstream.requests == []


def test_other_methods_are_405_with_the_error_body(buddy_url):
    response = httpx.get(f"{buddy_url}/v1/chat/completions")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


# --- upstream failures -----------------------------------------------------------------------------


def test_an_unreachable_upstream_is_502(buddy_url, deploy):
    deployed = deploy(f"http://127.0.0.1:{free_port()}")
    response = post(buddy_url, CHAT, deployed.secret)
    assert response.status_code == 502
    assert error_of(response)["code"] == "upstream_error"
    assert error_of(response)["type"] == "server_error"


@pytest.mark.parametrize("mode", ["fail", "unauthorized"])
def test_a_failing_upstream_is_502(buddy_url, upstream, deploy, mode):
    deployed = deploy(f"{upstream.url}/{mode}")
    for body in (CHAT, {**CHAT, "stream": True}):
        response = post(buddy_url, body, deployed.secret)
        assert response.status_code == 502
        assert error_of(response)["code"] == "upstream_error"


def test_an_upstream_refusal_is_relayed_as_400_with_its_message(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/refuses")
    response = post(buddy_url, CHAT, deployed.secret)
    assert response.status_code == 400
    assert error_of(response)["code"] == "upstream_rejected"
    assert error_of(response)["message"] == "context length exceeded"


def test_a_silent_upstream_is_504_after_the_read_timeout(buddy_url, upstream, deploy):
    deployed = deploy(f"{upstream.url}/silent")
    response = post(buddy_url, CHAT, deployed.secret)
    assert response.status_code == 504
    assert error_of(response)["code"] == "upstream_timeout"
    assert not upstream.finished.is_set()


# --- serving -------------------------------------------------------------------------------------


def test_every_middleware_runs_natively_async_so_a_waiting_view_holds_no_thread(caplog):
    """A sync-only middleware under ASGI would run the gateway's views from a thread held for as
    long as the upstream takes; Django logs each such adaptation (with DEBUG on only)."""
    with override_settings(DEBUG=True), caplog.at_level(logging.DEBUG, logger="django.request"):
        ASGIHandler().load_middleware(is_async=True)
    assert not [r for r in caplog.records if "adapted" in r.getMessage()]
    # The check itself works: a sync-only middleware is reported.
    with (
        override_settings(DEBUG=True, MIDDLEWARE=[*settings.MIDDLEWARE, SYNC_ONLY_MIDDLEWARE]),
        caplog.at_level(logging.DEBUG, logger="django.request"),
    ):
        ASGIHandler().load_middleware(is_async=True)
    assert [r for r in caplog.records if "adapted" in r.getMessage()]


SYNC_ONLY_MIDDLEWARE = "tests.gateway.test_gateway.SyncOnlyMiddleware"


class SyncOnlyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
