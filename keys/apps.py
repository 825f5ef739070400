from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the tasks in every process (web too), not only in a worker: the web process
        # sends them by name (`app.tasks[...]`), and Celery's autodiscovery is worker-only.
        from keys import (
            lookup_cache,
            tasks,  # noqa: F401
        )

        lookup_cache.guard_deletions()
