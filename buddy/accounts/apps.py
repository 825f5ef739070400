from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Who may call buddy: console sign-in (knox tokens) and machine clients (service tokens)."""

    name = "buddy.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
