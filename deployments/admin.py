from django.contrib import admin

from deployments.models import Deployment, DeploymentEvent, Template


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "model_id", "pack_hours_options", "is_active")
    list_filter = ("is_active",)
    search_fields = ("name", "slug", "model_id")


class DeploymentEventInline(admin.TabularInline):
    model = DeploymentEvent
    fields = ("at", "kind", "actor", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    """Read-only here: statuses change only through the services (admin actions come later)."""

    list_display = ("id", "owner", "model_id", "status", "pack_ends_at", "created_at")
    list_filter = ("status", "template")
    search_fields = ("id", "owner__username", "endpoint_url")
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
        "created_at",
        "updated_at",
    )
    inlines = [DeploymentEventInline]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(DeploymentEvent)
class DeploymentEventAdmin(admin.ModelAdmin):
    list_display = ("at", "deployment", "kind", "actor")
    list_filter = ("kind",)
    readonly_fields = ("deployment", "at", "kind", "actor", "detail")

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
