"""`/internal/v1/`: machine clients (the proxy, the provisioner), by service token."""

from django.urls import path

from deployments.internal_apis import DeploymentStatusCallbackApi

urlpatterns: list = [
    path(
        "deployments/<str:deployment_id>/status",
        DeploymentStatusCallbackApi.as_view(),
        name="internal-deployment-status",
    ),
]
