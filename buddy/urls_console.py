"""`/api/v1/`: the console frontend's API (session with CSRF, or `Authorization: Token`)."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
