from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the tasks in every process (web too), not only in a worker: the web process
        # sends them by name (`app.tasks[...]`), and Celery's autodiscovery is worker-only.
        from buddy.ops.metrics import register_collector
        from deployments import tasks  # noqa: F401
        from deployments.metrics import DeploymentsCollector

        register_collector(DeploymentsCollector())
