"""`GET /api/schema`, apart from `buddy.http.schema` (which DRF's settings import; the views
cannot be)."""

from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.views import SpectacularAPIView


class SchemaApi(SpectacularAPIView):
    """`GET /api/schema`: JSON unless YAML is asked for (`Accept: application/yaml` or
    `application/vnd.oai.openapi`, or `?format=yaml`). A client that accepts anything gets JSON,
    which every JSON and every YAML parser reads."""

    renderer_classes = [
        OpenApiJsonRenderer2,
        OpenApiJsonRenderer,
        OpenApiYamlRenderer,
        OpenApiYamlRenderer2,
    ]
