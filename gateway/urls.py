"""`/v1/`: the OpenAI-compatible gateway, authenticated by the deployment's `ob_sk_` keys (under
ASGI `buddy.asgi` serves it before Django; this route is for WSGI servers, see `gateway.views`)."""

from django.urls import re_path

from gateway import views

urlpatterns = [
    re_path(r"^.*$", views.gateway, name="gateway"),
]
