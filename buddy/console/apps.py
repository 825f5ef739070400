from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "buddy.console"
    label = "console"
    verbose_name = "Console"
