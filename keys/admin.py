"""Keys and service tokens in the admin. Hashes and sealed secrets are excluded from every form,
list and lookup: they are never fields here, so no page, filter or search can reach them."""

from django.contrib import admin

from keys.models import ApiKey, ServiceToken


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("masked", "name", "deployment", "is_default", "status", "last_used_at")
    list_filter = ("is_default", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("=public_id", "name")
    fields = (
        "id",
        "deployment",
        "name",
        "public_id",
        "masked",
        "is_default",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoke_reason",
        "secret_revealed_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(ServiceToken)
class ServiceTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "role", "created_at", "revoked_at")
    list_filter = ("role",)
    search_fields = ("name",)
    fields = ("name", "role", "created_at", "revoked_at")
    readonly_fields = ("name", "role", "created_at", "revoked_at")

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False
