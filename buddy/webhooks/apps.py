from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "buddy.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the tasks in every process (web too): they are sent by name after the commit.
        from buddy.webhooks import tasks  # noqa: F401
