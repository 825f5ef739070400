"""`/local-model/v1/`: the built-in model server that the `local` provisioner's instances use."""

from django.urls import path

from gateway import local_model

urlpatterns = [
    path("chat/completions", local_model.chat_completions, name="local-model-chat-completions"),
    path("models", local_model.models, name="local-model-models"),
]
