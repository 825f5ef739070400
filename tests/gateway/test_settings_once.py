"""The gateway reads its settings once per process (`buddy.core.conf.per_settings`), and again
whenever one changes: what it enforces follows `override_settings` at once."""

from __future__ import annotations

import asyncio

import httpx
from django.test import override_settings

from buddy.core.redis import cache_url
from gateway import upstream
from gateway.asgi import application


def _models(host: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
            return await client.get("/v1/models")

    return asyncio.run(call())


def test_the_allowed_hosts_follow_a_change_of_the_setting() -> None:
    with override_settings(ALLOWED_HOSTS=["a.example"]):
        assert _models("a.example").json()["error"]["code"] == "missing_api_key"
        refused = _models("b.example")
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == "Invalid Host header."
    with override_settings(ALLOWED_HOSTS=["b.example"]):
        assert _models("a.example").status_code == 400  # judged before, forgotten since
        assert _models("b.example").json()["error"]["code"] == "missing_api_key"


def test_the_security_header_follows_a_change_of_the_setting() -> None:
    with override_settings(ALLOWED_HOSTS=["a.example"], SECURE_CONTENT_TYPE_NOSNIFF=True):
        assert _models("a.example").headers["x-content-type-options"] == "nosniff"
    with override_settings(ALLOWED_HOSTS=["a.example"], SECURE_CONTENT_TYPE_NOSNIFF=False):
        assert "x-content-type-options" not in _models("a.example").headers


def test_values_read_once_are_read_again_after_a_change() -> None:
    with override_settings(BUDDY_CACHE_REDIS_URL="redis://cache.example:6379/3"):
        assert cache_url() == "redis://cache.example:6379/3"
    assert cache_url() != "redis://cache.example:6379/3"
    with override_settings(BUDDY_UPSTREAM_API_KEY="first"):
        assert dict(upstream._headers())["Authorization"] == "Bearer first"
        with override_settings(BUDDY_UPSTREAM_API_KEY="second"):
            assert dict(upstream._headers())["Authorization"] == "Bearer second"
        assert dict(upstream._headers())["Authorization"] == "Bearer first"
