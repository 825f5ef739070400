"""Keys and service tokens in the admin.

Hashes, digests and sealed secrets are excluded from every form, list and lookup: they are never
fields here, so no page, filter or search can reach them. Keys show their masked form. A service
token's secret is shown once, as a message on the page after its creation, and never again.
Revocations are actions that call the same services as the API.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html
from knox.models import AuthToken

from buddy.admin_actions import apply_each, form_or_page, operator_actor
from keys import services
from keys.models import ApiKey, RevokeReason, ServiceToken
from keys.tokens import PREFIX


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class RevokeForm(forms.Form):
    reason = forms.ChoiceField(
        choices=RevokeReason.choices,
        initial=RevokeReason.REVOKED_BY_OPERATOR,
        help_text="Recorded on each key and in its deployment's event history.",
    )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "masked",
        "name",
        "deployment",
        "is_default",
        "status",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = (KeyStatusFilter, "is_default", "revoke_reason", "deployment__status")
    list_select_related = ("deployment",)
    search_fields = ("=public_id",)
    search_help_text = "A key's public id (the 12 characters after ob_sk_ in its masked form)."
    fields = (
        "id",
        "deployment",
        "name",
        "masked",
        "public_id",
        "is_default",
        "status",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoke_reason",
        "secret_revealed_at",
    )
    readonly_fields = fields
    actions = ["revoke"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ApiKey], search_term: str
    ) -> tuple[QuerySet[ApiKey], bool]:
        # Accept the masked form as it is shown (`ob_sk_<public id>…`).
        term = search_term.strip().removesuffix("…").removesuffix("...").removeprefix(PREFIX)
        return super().get_search_results(request, queryset, term)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke the selected keys…", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> TemplateResponse | None:
        form, page = form_or_page(
            self,
            request,
            queryset,
            form_class=RevokeForm,
            action="revoke",
            title="Revoke keys",
            intro="Revoke these keys for good (lookups refuse them from the moment it commits):",
            submit_label="Revoke",
        )
        if form is None:
            return page
        actor = operator_actor(request)
        reason = form.cleaned_data["reason"]
        apply_each(
            self,
            request,
            queryset,
            lambda key: services.key_revoke(key_id=key.pk, actor=actor, reason=reason),
            done=f"Revoked {{count}} key(s) ({reason}).",
        )
        return None


@admin.register(ServiceToken)
class ServiceTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "role", "created_at", "revoked_at")
    list_filter = ("role", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name",)
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ServiceToken | None = None) -> list[str]:
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
