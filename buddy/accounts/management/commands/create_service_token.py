"""`manage.py create_service_token --role proxy|provisioner --name NAME`.

Stores the token hashed and prints its secret once, alone on the last line of the output.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from buddy.accounts.models import ServiceRole
from buddy.accounts.services import service_token_create
from buddy.core.errors import ValidationFailed


class Command(BaseCommand):
    help = "Create a service token for the proxy or the provisioner; prints its secret once."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--role", required=True, choices=ServiceRole.values)
        parser.add_argument("--name", required=True)

    def handle(self, *args: object, **options: object) -> None:
        try:
            token, secret = service_token_create(
                name=str(options["name"]), role=str(options["role"])
            )
        except ValidationFailed as exc:
            raise CommandError(f"{exc.message} {exc.fields}") from exc
        self.stdout.write(
            f"Created service token #{token.pk} '{token.name}' (role {token.role}). "
            "Its secret is shown once, on the next line; store it now."
        )
        self.stdout.write(secret)
