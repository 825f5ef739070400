from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "buddy.usage"
    label = "usage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the tasks in every process (web too): the embedded scheduler runs them by name.
        from buddy.usage import tasks  # noqa: F401
