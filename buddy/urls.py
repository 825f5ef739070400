"""The project's URLs. No `handler400..500` here: Django's own error pages (unknown URL, bad Host
header, an exception outside a view) are turned into the contract's JSON body by
`buddy.http.middleware.JsonErrorsMiddleware`, with DEBUG on or off."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularSwaggerView

from buddy.http.schema_apis import SchemaApi
from buddy.ops import views as ops

urlpatterns = [
    path("", RedirectView.as_view(url="/console/", permanent=False), name="root"),
    path("console/", include("buddy.console.urls")),
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics, name="metrics"),
    path("api/v1/", include("buddy.urls_console")),
    path("internal/v1/", include("buddy.urls_internal")),
    path("v1/", include("gateway.urls")),
    path("local-model/v1/", include("gateway.urls_local_model")),
    path("api/schema", SchemaApi.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
]
