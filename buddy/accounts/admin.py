"""Service tokens in the admin: a token's secret is shown once, in the body of the response to the
add form (sent with `Cache-Control: no-store`), and never again; its digest is never a field.
Console tokens (knox) are not here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import patch_cache_control
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
        once, by `response_add`, in the body of this same response."""
        if change:  # unreachable: the change page is view-only
            return
        token, secret = services.service_token_create(name=obj.name, role=obj.role)
        # The admin goes on with `obj` (its log entry, its response): make it the stored row.
        obj.pk = token.pk
        obj.digest = token.digest
        obj.created_at = token.created_at
        obj._state.adding = False
        obj._state.db = token._state.db
        # Only on this in-memory object, for `response_add` of this request; never stored.
        obj._new_secret = secret  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ServiceToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        """The page that shows the new secret, instead of a message (stored in a signed but
        unencrypted cookie) on the page after a redirect."""
        secret = obj.__dict__.pop("_new_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Service token created",
            "token": obj,
            "secret": secret,
        }
        response = TemplateResponse(
            request, "admin/accounts/servicetoken/secret_shown.html", context
        )
        patch_cache_control(response, no_store=True)
        return response

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
