"""Helpers of the lifecycle tests (worker, callbacks, keys in bulk)."""

from __future__ import annotations

from typing import Any

from django.test import Client

from buddy.accounts.services import service_token_create
from deployments.models import Deployment
from keys import tokens
from keys.models import ApiKey


def provisioner_token() -> str:
    return service_token_create(name="orchestrator", role="provisioner")[1]


def post_status(client: Client, token: str, deployment_id: object, **body: Any) -> Any:
    return client.post(
        f"/internal/v1/deployments/{deployment_id}/status",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def bulk_keys(deployment: Deployment, count: int) -> list[ApiKey]:
    """`count` active keys without the argon2 cost (nothing here verifies them)."""
    return ApiKey.objects.bulk_create(
        ApiKey(
            deployment=deployment,
            name=f"k{i}",
            public_id=tokens.generate().public_id,
            secret_hash="not-a-hash",
        )
        for i in range(count)
    )


def active_keys(deployment_id: object) -> int:
    return ApiKey.objects.filter(deployment_id=deployment_id, revoked_at__isnull=True).count()
