"""The console's pages, under `/console/` (`buddy.urls`)."""

from django.urls import path

from buddy.console import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("sign-in", views.SignInView.as_view(), name="sign-in"),
    path("sign-out", views.SignOutView.as_view(), name="sign-out"),
    path("templates", views.templates, name="templates"),
    path("templates/deploy", views.deploy, name="deploy"),
    path("instances", views.instances, name="instances"),
    path("instances/rows", views.instance_rows, name="instance-rows"),
    path("instances/<uuid:deployment_id>", views.instance, name="instance"),
    path("instances/<uuid:deployment_id>/stop", views.instance_stop, name="instance-stop"),
    path("instances/<uuid:deployment_id>/extend", views.instance_extend, name="instance-extend"),
    path("instances/<uuid:deployment_id>/keys", views.key_create, name="key-create"),
    path("keys", views.keys, name="keys"),
    path("keys/<uuid:key_id>/reveal", views.key_reveal, name="key-reveal"),
    path("keys/<uuid:key_id>/roll", views.key_roll, name="key-roll"),
    path("keys/<uuid:key_id>/edit", views.key_edit, name="key-edit"),
    path("keys/<uuid:key_id>/revoke", views.key_revoke, name="key-revoke"),
    path("webhooks", views.webhooks, name="webhooks"),
    path("webhooks/add", views.webhook_create, name="webhook-create"),
    path("webhooks/<uuid:endpoint_id>", views.webhook, name="webhook"),
    path("webhooks/<uuid:endpoint_id>/test", views.webhook_test, name="webhook-test"),
    path("webhooks/<uuid:endpoint_id>/delete", views.webhook_delete, name="webhook-delete"),
]
