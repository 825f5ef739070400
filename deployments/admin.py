"""Deployments, their events and templates in the admin.

The admin shows, services act: every field of a deployment is read-only, and stopping,
terminating or extending one is an action that calls the same service as the API (so the event,
the revocation of its keys and the cache guards happen exactly as they do there). Nothing here
can delete a deployment or an event. Its keys are shown by `keys.admin`, which builds on this page.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from buddy.core.ids import as_uuid
from buddy.http.admin_actions import ReadOnlyTabularInline, apply_each, form_or_page, operator_actor
from deployments import services
from deployments.models import Deployment, DeploymentEvent, Template


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    """Templates are plain configuration: operators edit them freely (a deployment keeps the
    model id it was created with)."""

    list_display = ("name", "slug", "model_id", "pack_hours_options", "is_active")
    list_filter = ("is_active",)
    search_fields = ("name", "slug", "model_id")
    readonly_fields = ("created_at",)


class DeploymentEventInline(ReadOnlyTabularInline):
    model = DeploymentEvent
    fields = ("at", "kind", "actor", "detail")
    readonly_fields = fields
    ordering = ("-at", "-id")
    verbose_name_plural = "event history"


class ExtendPackForm(forms.Form):
    pack_hours = forms.TypedChoiceField(
        label="Pack hours",
        coerce=int,
        choices=[],
        help_text="Added to each deployment's pack end; one of its template's pack lengths.",
    )

    def __init__(self, *args: Any, hours: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["pack_hours"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [(h, f"{h} h") for h in hours]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display: tuple[str, ...] = (
        "id",
        "owner",
        "model_id",
        "status",
        "pack_ends_at",
    )
    list_filter = ("status", "template")
    list_select_related = ("owner", "template")
    # An id is matched exactly (see get_search_results); owners and endpoints by substring.
    search_fields = ("owner__username", "owner__email", "endpoint_url")
    search_help_text = "A deployment id, or part of an owner's username/email or an endpoint URL."
    date_hierarchy = "created_at"
    readonly_fields = (
        "id",
        "owner",
        "template",
        "model_id",
        "status",
        "endpoint_url",
        "pack_ends_at",
        "ended_at",
        "end_reason",
        "torn_down_at",
        "created_at",
        "updated_at",
    )
    inlines = [DeploymentEventInline]
    actions = ["stop", "terminate", "extend_pack"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Deployment], search_term: str
    ) -> tuple[QuerySet[Deployment], bool]:
        if (pk := as_uuid(search_term.strip())) is not None:
            return queryset.filter(pk=pk), False
        return super().get_search_results(request, queryset, search_term)

    # Statuses change only through the services: the change page is view-only (no Save that
    # could write back a stale row), while the changelist keeps its actions.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(
        description="Stop the selected deployments (revokes their keys)", permissions=["change"]
    )
    def stop(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        actor = operator_actor(request)
        apply_each(
            self,
            request,
            queryset,
            lambda d: services.deployment_stop_by_operator(deployment_id=d.pk, actor=actor),
            done="Stopped {count} deployment(s) and revoked their keys.",
        )

    @admin.action(
        description="Terminate the selected deployments (revokes their keys)",
        permissions=["change"],
    )
    def terminate(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        actor = operator_actor(request)
        apply_each(
            self,
            request,
            queryset,
            lambda d: services.deployment_terminate_by_operator(deployment_id=d.pk, actor=actor),
            done="Terminated {count} deployment(s) and revoked their keys.",
        )

    @admin.action(
        description="Extend the pack of the selected deployments…", permissions=["change"]
    )
    def extend_pack(
        self, request: HttpRequest, queryset: QuerySet[Deployment]
    ) -> TemplateResponse | None:
        deployments = list(queryset.select_related("template"))
        hours = sorted({h for d in deployments for h in d.template.pack_hours_options})

        class Form(ExtendPackForm):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, hours=hours, **kwargs)

        form, page = form_or_page(
            self,
            request,
            queryset,
            form_class=Form,
            action="extend_pack",
            title="Extend pack",
            intro="Add a pack to each of these deployments (same id, same keys, later end):",
            submit_label="Extend",
        )
        if form is None:
            return page
        actor = operator_actor(request)
        pack_hours = form.cleaned_data["pack_hours"]
        apply_each(
            self,
            request,
            deployments,
            lambda d: services.deployment_extend(
                deployment_id=d.pk, pack_hours=pack_hours, actor=actor
            ),
            done=f"Extended the pack of {{count}} deployment(s) by {pack_hours} h.",
        )
        return None


@admin.register(DeploymentEvent)
class DeploymentEventAdmin(admin.ModelAdmin):
    """The append-only history of every deployment, searchable; nothing here can change it."""

    list_display = ("at", "deployment", "kind", "actor")
    list_filter = ("kind",)
    list_select_related = ("deployment",)
    search_fields = ("actor",)
    readonly_fields = ("deployment", "at", "kind", "actor", "detail")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
