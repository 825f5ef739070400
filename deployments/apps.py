from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the tasks in every process (web included), not only in workers: the on-commit
        # follow-ups and the embedded scheduler look them up by name.
        from deployments import tasks  # noqa: F401
