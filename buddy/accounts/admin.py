"""Service tokens in the admin: a token's secret is shown once, as a message on the page after
its creation, and never again; its digest is never a field. Console tokens (knox) are not here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from knox.models import AuthToken

from buddy.accounts import services
from buddy.accounts.models import ServiceToken
from buddy.http.admin_actions import RefuseSecretLookups, apply_each


@admin.register(ServiceToken)
class ServiceTokenAdmin(RefuseSecretLookups):
    secret_fields = frozenset({"digest"})
    list_display = ("name", "role", "created_at", "revoked_at")
    list_filter = ("role", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name",)
    actions = ["revoke"]

    def get_fields(  # type: ignore[override]  # a list of names is one of the accepted shapes
        self, request: HttpRequest, obj: ServiceToken | None = None
    ) -> list[str]:
        if obj is None:
            return ["name", "role"]
        return ["name", "role", "created_at", "revoked_at"]

    def get_readonly_fields(
        self, request: HttpRequest, obj: ServiceToken | None = None
    ) -> list[str]:
        return [] if obj is None else ["name", "role", "created_at", "revoked_at"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ServiceToken, form: Any, change: bool) -> None:
        """Creation goes through the service, which keeps only the digest; the secret is shown
        once, in a message on the next page."""
        if change:  # unreachable: the change page is view-only
            return
        token, secret = services.service_token_create(name=obj.name, role=obj.role)
        # The admin goes on with `obj` (its log entry, its redirect): make it the stored row.
        obj.pk = token.pk
        obj.digest = token.digest
        obj.created_at = token.created_at
        obj._state.adding = False
        obj._state.db = token._state.db
        self.message_user(
            request,
            format_html(
                "The secret of service token “{}” is shown this once; store it now: "
                "<code class='service-token-secret'>{}</code>",
                token.name,
                secret,
            ),
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected service tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ServiceToken]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda token: services.service_token_revoke(token_id=token.pk),
            done="Revoked {count} service token(s).",
        )


# knox's own admin lists and searches console tokens by digest, which is also their primary key
# and so in every link and checkbox of any admin page about them: console tokens are not in the
# admin. An operator signs a user out of every console session by deactivating the user (knox
# refuses tokens of inactive users).
if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)
