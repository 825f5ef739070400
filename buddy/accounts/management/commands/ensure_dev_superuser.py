"""`make run`'s development superuser: created once with a random password it prints."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the development superuser 'admin' (DEBUG only) and print its password."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--username", default="admin")

    def handle(self, *args: object, **options: object) -> None:
        if not settings.DEBUG:
            raise CommandError("ensure_dev_superuser is for the embedded development mode only")
        username = str(options["username"])
        users = get_user_model().objects
        if users.filter(username=username).exists():
            self.stdout.write(
                f"Development superuser '{username}' exists (password printed when it was made; "
                f"`python manage.py changepassword {username}` sets a new one)."
            )
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser(username=username, email="", password=password)
        self.stdout.write(f"Development superuser: username '{username}', password '{password}'")
