"""`/internal/v1/`: machine clients (the proxy, the provisioner), by service token."""

from django.urls import path

from deployments.internal_apis import DeploymentStatusCallbackApi
from keys.internal_apis import SecretScanningApi, UsageReportApi
from keys.lookup.apis import AuthLookupApi

urlpatterns: list = [
    path("auth/lookup", AuthLookupApi.as_view(), name="internal-auth-lookup"),
    path("usage", UsageReportApi.as_view(), name="internal-usage"),
    path(
        "deployments/<str:deployment_id>/status",
        DeploymentStatusCallbackApi.as_view(),
        name="internal-deployment-status",
    ),
    path("secret-scanning", SecretScanningApi.as_view(), name="internal-secret-scanning"),
]
