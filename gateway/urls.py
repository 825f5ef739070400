"""`/v1/`: the OpenAI-compatible gateway, authenticated by the deployment's `ob_sk_` keys."""

from django.urls import path

from gateway import views

urlpatterns = [
    path("chat/completions", views.chat_completions, name="gateway-chat-completions"),
    path("models", views.models, name="gateway-models"),
]
