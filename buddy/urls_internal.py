"""`/internal/v1/`: machine clients (the proxy, the provisioner), by service token."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
