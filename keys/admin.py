"""Keys in the admin, on their own page and on their deployment's.

Hashes and sealed secrets are excluded from every form, list and lookup: they are never fields
here, so no page, filter or search can reach them. Keys show their masked form. Revocations are
actions that call the same services as the API.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from buddy.core.errors import DomainError
from buddy.http.admin_actions import (
    ReadOnlyTabularInline,
    RefuseSecretLookups,
    apply_each,
    form_or_page,
    operator_actor,
)
from buddy.usage.selectors import UsageSeries, usage_series
from buddy.usage.serializers import DEFAULT_SPAN
from deployments.admin import DeploymentAdmin
from deployments.models import Deployment
from keys import services
from keys.models import ApiKey, KeyStatus, RevokeReason, key_status_q
from keys.tokens import PREFIX


def usage_html(*, key_id: Any = None, deployment_id: Any = None) -> SafeString:
    """Usage in the admin: the last 24 hours, and the last 30 days by UTC day (days with traffic;
    the console API has the hours)."""
    now = timezone.now()

    def series(granularity: str) -> UsageSeries:
        return usage_series(
            key_id=key_id,
            deployment_id=deployment_id,
            granularity=granularity,
            since=now - DEFAULT_SPAN[granularity],
            until=now,
        )

    last_24h, days = series("hour").totals, series("day")
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (f"{b.start:%Y-%m-%d}", b.requests, b.prompt_tokens, b.completion_tokens)
            for b in reversed(days.buckets)
        ),
    )
    return format_html(
        "<p>Last 24 h: {} requests, {} tokens ({} prompt, {} completion). "
        "Last 30 days: {} requests, {} tokens.</p>"
        "<table><thead><tr><th>UTC day</th><th>requests</th><th>prompt tokens</th>"
        "<th>completion tokens</th></tr></thead><tbody>{}</tbody></table>",
        last_24h.requests,
        last_24h.total_tokens,
        last_24h.prompt_tokens,
        last_24h.completion_tokens,
        days.totals.requests,
        days.totals.total_tokens,
        rows,
    )


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(status, status) for status in KeyStatus.values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() in KeyStatus.values:
            return queryset.filter(key_status_q(str(self.value()), timezone.now()))
        return queryset


# What an operator may change of a key: through `key_update`, as the owner's PATCH does.
EDITABLE_FIELDS = ("name", "expires_at", "rate_limit_rpm", "rate_limit_tpm")


class KeyChangeForm(forms.ModelForm):
    """The key's editable fields, checked by the service's own rules (no save of its own: the
    admin's `save_model` calls `key_update`)."""

    class Meta:
        model = ApiKey
        fields = EDITABLE_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        now = timezone.now()
        if self.instance.status_at(now) != KeyStatus.ACTIVE:
            raise forms.ValidationError(f"The key is {self.instance.status_at(now)}.")
        checks = {
            "expires_at": lambda v: services.validate_expires_at(v, now=now),
            "rate_limit_rpm": lambda v: services.validate_rate_limit(v, field="rate_limit_rpm"),
            "rate_limit_tpm": lambda v: services.validate_rate_limit(v, field="rate_limit_tpm"),
        }
        for field, check in checks.items():
            if field in self.changed_data:
                try:
                    check(data.get(field))
                except DomainError as exc:
                    for message in (exc.fields or {}).get(field, [exc.message]):
                        self.add_error(field, message)
        return data


class RevokeForm(forms.Form):
    reason = forms.ChoiceField(
        choices=RevokeReason.choices,
        initial=RevokeReason.REVOKED_BY_OPERATOR,
        help_text="Recorded on each key and in its deployment's event history.",
    )


@admin.register(ApiKey)
class ApiKeyAdmin(RefuseSecretLookups):
    secret_fields = frozenset({"secret_hash", "sealed_secret"})
    list_display = (
        "masked",
        "name",
        "deployment",
        "is_default",
        "status",
        "expires_at",
        "rate_limit_rpm",
        "rate_limit_tpm",
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
        "expires_at",
        "rate_limit_rpm",
        "rate_limit_tpm",
        "rolled_to",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoke_reason",
        "secret_revealed_at",
        "usage",
    )
    form = KeyChangeForm
    readonly_fields = tuple(field for field in fields if field not in EDITABLE_FIELDS)
    actions = ["revoke"]

    @admin.display(description="usage")
    def usage(self, obj: ApiKey) -> SafeString:
        return usage_html(key_id=obj.pk)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ApiKey], search_term: str
    ) -> tuple[QuerySet[ApiKey], bool]:
        # Accept the masked form as it is shown (`ob_sk_<public id>…`).
        term = search_term.strip().removesuffix("…").removesuffix("...").removeprefix(PREFIX)
        return super().get_search_results(request, queryset, term)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A revoked or expired key can no longer be edited (409 in the API): all read-only.
        if obj is not None and obj.status != KeyStatus.ACTIVE:
            return self.fields
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        """Through the owner's service (`key_update`): the same rules, event and cache guard."""
        services.key_update(
            key_id=obj.pk,
            actor=operator_actor(request),
            **{field: form.cleaned_data[field] for field in form.changed_data},
        )

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


class ApiKeyInline(ReadOnlyTabularInline):
    """The deployment's keys, by masked id (hashes and sealed secrets are not fields here)."""

    model = ApiKey
    fields = (
        "masked",
        "name",
        "is_default",
        "status",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoke_reason",
    )
    readonly_fields = fields
    ordering = ("-created_at",)
    show_change_link = True


class DeploymentWithKeysAdmin(DeploymentAdmin):
    """The deployments' page with their keys: keys build on deployments, so this app extends that
    page rather than the other way round."""

    list_display = (*DeploymentAdmin.list_display, "key_count")
    inlines = [ApiKeyInline, *DeploymentAdmin.inlines]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*super().get_readonly_fields(request, obj), "usage")

    @admin.display(description="usage (all its keys)")
    def usage(self, obj: Deployment) -> SafeString:
        return usage_html(deployment_id=obj.pk)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Deployment]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                active_keys=Count(
                    "keys", filter=key_status_q(KeyStatus.ACTIVE, timezone.now(), "keys__")
                )
            )
        )

    @admin.display(description="active keys", ordering="active_keys")
    def key_count(self, obj: Deployment) -> int:
        return getattr(obj, "active_keys", 0)


admin.site.unregister(Deployment)
admin.site.register(Deployment, DeploymentWithKeysAdmin)
