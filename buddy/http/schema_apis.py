"""`GET /api/schema`, apart from `buddy.http.schema` (which DRF's settings import; the views
cannot be)."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.utils import translation
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.views import SpectacularAPIView
from rest_framework.request import Request
from rest_framework.response import Response

# The generated documents, by (API version, language): the URLconf and the views are fixed for
# the life of a process, so the schema is generated once (it takes a large fraction of a second of
# CPU) instead of on every request to a public endpoint.
_schemas: dict[tuple[str | None, str | None], Any] = {}
_generating = threading.Lock()


def forget_schemas() -> None:
    """Drop the generated documents (the next request generates again)."""
    with _generating:
        _schemas.clear()


class SchemaApi(SpectacularAPIView):
    """`GET /api/schema`: JSON unless YAML is asked for (`Accept: application/yaml` or
    `application/vnd.oai.openapi`, or `?format=yaml`). A client that accepts anything gets JSON,
    which every JSON and every YAML parser reads. Generated once per process."""

    renderer_classes = [
        OpenApiJsonRenderer2,
        OpenApiJsonRenderer,
        OpenApiYamlRenderer,
        OpenApiYamlRenderer2,
    ]

    def _get_schema_response(self, request: Request) -> Response:
        version = self.api_version or request.version or self._get_version_parameter(request)
        language = translation.get_language()
        # Only a language buddy knows gets a document of its own: `?lang=` cannot fill memory.
        key = (version, language if language in dict(settings.LANGUAGES) else None)
        with _generating:
            schema = _schemas.get(key)
            if schema is None:
                generator = self.generator_class(
                    urlconf=self.urlconf, api_version=version, patterns=self.patterns
                )
                schema = _schemas[key] = generator.get_schema(
                    request=request, public=self.serve_public
                )
        filename = self._get_filename(request, version)
        return Response(
            data=schema, headers={"Content-Disposition": f'inline; filename="{filename}"'}
        )
