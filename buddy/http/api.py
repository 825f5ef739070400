"""Pieces shared by the DRF views: content negotiation, session authentication, pagination."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db.models import QuerySet
from rest_framework import exceptions, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from buddy.core import errors


class StrictJSONParser(JSONParser):
    """DRF's JSON parser (which already refuses NaN and Infinity), also refusing bodies nested
    too deeply for the decoder: those are bad input (`400 invalid_json`), not a server error."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from exc


class JsonNegotiation(DefaultContentNegotiation):
    """Every body is JSON, whatever its Content-Type says, and every answer is JSON.

    So a body that is not JSON is `400 invalid_json` (never a 415), and an `Accept` header that
    names no JSON type still gets the JSON answer (never a 406), as the contract promises.
    """

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        for parser in parsers:
            if isinstance(parser, JSONParser):
                return parser
        return super().select_parser(request, parsers)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except exceptions.NotAcceptable:
            first = next(iter(renderers))
            return first, first.media_type


class CsrfFailed(exceptions.APIException):
    status_code = errors.CSRF_FAILED.status
    default_code = errors.CSRF_FAILED.code
    default_detail = errors.CSRF_FAILED.message


class CsrfSessionAuthentication(SessionAuthentication):
    """Django's session with CSRF enforced, refusing with the contract's `csrf_failed` code."""

    def enforce_csrf(self, request: Request) -> None:
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as exc:
            raise CsrfFailed() from exc


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would turn 5 or true into "5" or "True"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class BlankAsNullCharField(serializers.CharField):
    """A text column whose empty value ("") is shown as null."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, **kwargs)

    def to_representation(self, value: Any) -> str | None:  # type: ignore[override]
        return value or None


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, and only that: DRF's IntegerField would take "8", 8.0 or true."""

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class ConsolePagination(PageNumberPagination):
    """`{"count", "next", "previous", "results"}`; an out-of-range page is `404 not_found`."""


def console_owner_id(request: Request) -> int:
    """The signed-in console user's id (every console view requires authentication)."""
    owner_id = request.user.pk
    assert isinstance(owner_id, int), "console views require an authenticated user"
    return owner_id


def console_actor(request: Request) -> str:
    """Who did it, as recorded in deployment events."""
    return f"user:{request.user.get_username()}"


def paginated_response(
    *,
    request: Request,
    view: Any,
    queryset: QuerySet[Any],
    serializer_class: type[serializers.BaseSerializer],
    context: Callable[[list[Any]], dict[str, Any]] | None = None,
) -> Response:
    """One page; `context(page)` gives the serializer what the whole page needs (read once for
    the page, not once per row)."""
    paginator = ConsolePagination()
    page = list(paginator.paginate_queryset(queryset, request, view=view) or [])
    extra = context(page) if context is not None else {}
    return paginator.get_paginated_response(serializer_class(page, many=True, context=extra).data)


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """The validated data of `data`, or `400 validation_error` with every field's messages."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def validated_query(
    serializer_class: type[serializers.Serializer], request: Request
) -> dict[str, Any]:
    """The validated filters of the query string.

    Read as a plain dict: given the QueryDict itself, DRF would take an empty `?status=` as an
    absent value (HTML-form rules) instead of refusing it like any other value not in the enum.
    """
    return validated(serializer_class, request.query_params.dict())
