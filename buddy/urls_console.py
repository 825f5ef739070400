"""`/api/v1/`: the console frontend's API (session with CSRF, or `Authorization: Token`)."""

from django.urls import path

from buddy.accounts.apis import LogoutAllApi, LogoutApi, TokenCreateApi
from buddy.webhooks import apis as webhook_apis
from deployments import apis as deployment_apis
from keys import apis as key_apis

urlpatterns = [
    path("auth/token", TokenCreateApi.as_view(), name="auth-token"),
    path("auth/logout", LogoutApi.as_view(), name="auth-logout"),
    path("auth/logout-all", LogoutAllApi.as_view(), name="auth-logout-all"),
    path("templates", deployment_apis.TemplateListApi.as_view(), name="templates"),
    path("deployments", deployment_apis.DeploymentListCreateApi.as_view(), name="deployments"),
    path(
        "deployments/<uuid:deployment_id>",
        deployment_apis.DeploymentDetailApi.as_view(),
        name="deployment-detail",
    ),
    path(
        "deployments/<uuid:deployment_id>/stop",
        deployment_apis.DeploymentStopApi.as_view(),
        name="deployment-stop",
    ),
    path(
        "deployments/<uuid:deployment_id>/extend",
        deployment_apis.DeploymentExtendApi.as_view(),
        name="deployment-extend",
    ),
    path(
        "deployments/<uuid:deployment_id>/events",
        deployment_apis.DeploymentEventListApi.as_view(),
        name="deployment-events",
    ),
    path(
        "deployments/<uuid:deployment_id>/keys",
        key_apis.DeploymentKeyListCreateApi.as_view(),
        name="deployment-keys",
    ),
    path(
        "deployments/<uuid:deployment_id>/usage",
        key_apis.DeploymentUsageApi.as_view(),
        name="deployment-usage",
    ),
    path("keys", key_apis.KeyListApi.as_view(), name="keys"),
    path("keys/<uuid:key_id>", key_apis.KeyDetailApi.as_view(), name="key-detail"),
    path("keys/<uuid:key_id>/reveal", key_apis.KeyRevealApi.as_view(), name="key-reveal"),
    path("keys/<uuid:key_id>/revoke", key_apis.KeyRevokeApi.as_view(), name="key-revoke"),
    path("keys/<uuid:key_id>/roll", key_apis.KeyRollApi.as_view(), name="key-roll"),
    path("keys/<uuid:key_id>/usage", key_apis.KeyUsageApi.as_view(), name="key-usage"),
    path("webhooks", webhook_apis.WebhookListCreateApi.as_view(), name="webhooks"),
    path(
        "webhooks/<uuid:endpoint_id>",
        webhook_apis.WebhookDetailApi.as_view(),
        name="webhook-detail",
    ),
    path(
        "webhooks/<uuid:endpoint_id>/test",
        webhook_apis.WebhookTestApi.as_view(),
        name="webhook-test",
    ),
    path(
        "webhooks/<uuid:endpoint_id>/deliveries",
        webhook_apis.WebhookDeliveryListApi.as_view(),
        name="webhook-deliveries",
    ),
]
