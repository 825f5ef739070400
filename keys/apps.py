from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the tasks in every process (web too), not only in a worker: the web process
        # sends them by name (`app.tasks[...]`), and Celery's autodiscovery is worker-only.
        from buddy.ops.metrics import register_collector, register_lookup_outcomes
        from keys import receivers, tasks  # noqa: F401
        from keys.lookup import guards
        from keys.lookup.outcomes import LookupOutcome
        from keys.metrics import KeysCollector

        guards.connect()
        receivers.connect()
        register_collector(KeysCollector())
        register_lookup_outcomes(outcome.code for outcome in LookupOutcome)
