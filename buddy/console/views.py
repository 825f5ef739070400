"""The console's pages: thin views over the same services and selectors as the API.

Every page needs a signed-in user (Django's session; CSRF on every form). An object that is not
the user's is a 404 exactly like a missing one, checked before a form is read. A refusal of a
service is shown with the error catalogue's message (the API's), never with rules of the views'
own. A secret (a key's, a webhook's signing secret) is in exactly one response, the one that
creates or reveals it, sent with `Cache-Control: no-store`; every page is `no-cache, no-store`
anyway (a signed-in page is not kept by the browser after sign-out).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST
from rest_framework import serializers
from rest_framework.request import Request

from buddy.accounts.throttles import TokenFailureThrottle
from buddy.console import charts
from buddy.core import errors
from buddy.core.errors import DomainError, NotFound, ValidationFailed
from buddy.usage.selectors import floor_hour, usage_24h_for_keys, usage_series
from buddy.webhooks import selectors as webhook_selectors
from buddy.webhooks import services as webhook_services
from buddy.webhooks.models import SUBSCRIBABLE_TYPES, WebhookEndpoint
from buddy.webhooks.serializers import WebhookEndpointCreateInputSerializer
from deployments import selectors as deployment_selectors
from deployments import services as deployment_services
from deployments.models import Deployment, DeploymentStatus
from deployments.serializers import DeploymentCreateInputSerializer, DeploymentExtendInputSerializer
from keys import selectors as key_selectors
from keys import services as key_services
from keys.models import ApiKey
from keys.serializers import (
    KeyCreateInputSerializer,
    KeyRollInputSerializer,
    KeyUpdateInputSerializer,
)

T = TypeVar("T")
SIGN_IN = "console:sign-in"
# Statuses a deployment leaves by itself: My Instances polls while one is shown.
_CHANGING = (DeploymentStatus.PENDING, DeploymentStatus.PROVISIONING)
_LIVE = (DeploymentStatus.PENDING, DeploymentStatus.PROVISIONING, DeploymentStatus.READY)
POLL_SECONDS = 2


def page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A console page: signed in, never cached."""
    return login_required(never_cache(view), login_url=SIGN_IN)


def _owner_id(request: HttpRequest) -> int:
    owner_id = request.user.pk
    assert isinstance(owner_id, int)
    return owner_id


def _actor(request: HttpRequest) -> str:
    """Who did it, as the API records it (a console action is the user's)."""
    return f"user:{request.user.get_username()}"


def _owned(find: Callable[..., T], **kwargs: Any) -> T:
    """The user's object through its selector, or a 404 page (someone else's or missing)."""
    try:
        return find(**kwargs)
    except NotFound:
        raise Http404 from None


def _deployment(request: HttpRequest, deployment_id: uuid.UUID) -> Deployment:
    return _owned(
        deployment_selectors.deployment_get_owned,
        owner_id=_owner_id(request),
        deployment_id=deployment_id,
    )


def _key(request: HttpRequest, key_id: uuid.UUID) -> ApiKey:
    return _owned(key_selectors.key_get_owned, owner_id=_owner_id(request), key_id=key_id)


def _endpoint(request: HttpRequest, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    return _owned(
        webhook_selectors.webhook_endpoint_get_owned,
        owner_id=_owner_id(request),
        endpoint_id=endpoint_id,
    )


# --- forms: what a browser sends, read as the API's JSON and checked by the API's serializers ---


def _integer_or_text(value: str) -> int | str:
    """A form's number as the JSON integer the API takes; anything else stays text, so that the
    API's serializer refuses it with its own message ("A valid integer is required.")."""
    try:
        return int(value.strip())
    except ValueError:
        return value


def _form_data(
    request: HttpRequest,
    *,
    text: tuple[str, ...] = (),
    integers: tuple[str, ...] = (),
    datetimes: tuple[str, ...] = (),
    clear_blank: bool = False,
) -> dict[str, Any]:
    """The form's fields as the API's body: a blank optional field is left out (or, with
    `clear_blank`, sent as null: it clears the value, as `null` does in a PATCH)."""
    data: dict[str, Any] = {}
    for name in text:
        if name in request.POST:
            data[name] = request.POST[name]
    for name in (*integers, *datetimes):
        value = request.POST.get(name, "").strip()
        if not value:
            if clear_blank and name in request.POST:
                data[name] = None
            continue
        data[name] = _integer_or_text(value) if name in integers else value
    return data


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for name, value in detail.items():
            out.update(_flatten(value, f"{prefix}{name}."))
        return out
    if isinstance(detail, list) and any(isinstance(item, (dict, list)) for item in detail):
        out = {}
        for index, item in enumerate(detail):
            out.update(_flatten(item, f"{prefix}{index}."))
        return out
    items = detail if isinstance(detail, list) else [detail]
    return {prefix.rstrip(".") or "non_field_errors": [str(item) for item in items]}


def _validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """The API's validation of the body (`400 validation_error` with the same messages)."""
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise ValidationFailed(fields=_flatten(serializer.errors))
    return dict(serializer.validated_data)


def _refusal(exc: DomainError) -> dict[str, Any]:
    return {
        "code": exc.entry.code,
        "message": exc.message,
        "fields": exc.fields or {},
        "status": exc.entry.status,
    }


def _after_action(
    request: HttpRequest, action: Callable[[], str], *, back: str
) -> HttpResponseRedirect:
    """Run a form's action (a service call); its result or its refusal (the API's message) is
    shown on the page it goes back to."""
    try:
        messages.success(request, action())
    except DomainError as exc:
        messages.error(request, _error_text(exc))
    return HttpResponseRedirect(back)


def _error_text(exc: DomainError) -> str:
    if not exc.fields:
        return exc.message
    details = "; ".join(
        f"{name}: {' '.join(texts)}" if name != "non_field_errors" else " ".join(texts)
        for name, texts in exc.fields.items()
    )
    return f"{exc.message} {details}"


def _shown_once(
    request: HttpRequest, *, title: str, secret: str, note: str, back: str, status: int = 200
) -> HttpResponse:
    """The one response that holds a secret: a dialog (htmx swaps it into the page) or, for a
    plain form post, a page around the same dialog. `no-store` either way."""
    context = {"title": title, "secret": secret, "note": note, "back": back}
    template = "console/_secret_dialog.html" if request.htmx else "console/secret_page.html"  # type: ignore[attr-defined]
    response = render(request, template, context, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _refused_dialog(request: HttpRequest, exc: DomainError, *, back: str) -> HttpResponse:
    """A refused action that would have shown a secret: the API's status and message."""
    context = {"refusal": _refusal(exc), "back": back}
    template = "console/_error_dialog.html" if request.htmx else "console/error_page.html"  # type: ignore[attr-defined]
    return render(request, template, context, status=exc.entry.status)


# --- sign in, sign out --------------------------------------------------------------------------


class _SignInAttempt:
    """What the API's sign-in throttle reads of a request (its client address, the username),
    for a form post: the console's sign-in counts failures in the same counters as
    `POST /api/v1/auth/token`."""

    def __init__(self, request: HttpRequest) -> None:
        self.META = request.META
        self.headers = request.headers
        self.data = {"username": request.POST.get("username", "")}


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class SignInView(auth_views.LoginView):
    """Django's session sign-in, behind the API's failure throttle (`BUDDY_TOKEN_FAILURE_RATE`,
    `_PER_USERNAME`): refused with `429` and the catalogue's message before any password is
    hashed once either limit is reached; only failures count."""

    template_name = "console/sign_in.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        return reverse("console:instances")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "invalid_message": errors.INVALID_CREDENTIALS.message,
        }

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        attempt = cast(Request, _SignInAttempt(request))
        throttle = TokenFailureThrottle()
        if not throttle.allow_request(attempt, self):
            response = render(
                request,
                self.template_name,
                {"refused": errors.RATE_LIMITED.message, "form": self.get_form_class()()},
                status=errors.RATE_LIMITED.status,
            )
            response["Retry-After"] = str(math.ceil(throttle.wait() or 1))
            return response
        response = super().post(request, *args, **kwargs)
        if response.status_code == 200:  # the form again: wrong credentials
            throttle.record_failure(attempt, self)
        return response


class SignOutView(auth_views.LogoutView):
    next_page = SIGN_IN


@require_GET
def home(request: HttpRequest) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("console:instances"))


# --- Templates ------------------------------------------------------------------------------------


@page
@require_GET
def templates(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "console/templates.html",
        {"templates": deployment_selectors.template_list_active(), "nav": "templates"},
    )


@page
@require_POST
def deploy(request: HttpRequest) -> HttpResponse:
    try:
        data = _validated(
            DeploymentCreateInputSerializer,
            _form_data(request, text=("template",), integers=("pack_hours",)),
        )
        deployment = deployment_services.deployment_create(
            owner=request.user,
            template_slug=data["template"],
            pack_hours=data["pack_hours"],
            actor=_actor(request),
        )
    except DomainError as exc:
        messages.error(request, _error_text(exc))
        return HttpResponseRedirect(reverse("console:templates"))
    messages.success(request, f"Deploying {deployment.model_id}: it is ready in a few moments.")
    return HttpResponseRedirect(reverse("console:instances"))


# --- My Instances ---------------------------------------------------------------------------------


def _instances_context(request: HttpRequest) -> dict[str, Any]:
    deployments = list(deployment_selectors.deployment_list_for_owner(owner_id=_owner_id(request)))
    return {
        "deployments": deployments,
        "changing": any(d.status in _CHANGING for d in deployments),
        "poll_seconds": POLL_SECONDS,
        "now": timezone.now(),
    }


@page
@require_GET
def instances(request: HttpRequest) -> HttpResponse:
    return render(
        request, "console/instances.html", {**_instances_context(request), "nav": "instances"}
    )


@page
@require_GET
def instance_rows(request: HttpRequest) -> HttpResponse:
    """The table of My Instances alone, polled while an instance is on its way."""
    return render(request, "console/_instance_rows.html", _instances_context(request))


def _usage_chart(deployment: Deployment) -> charts.Chart:
    now = timezone.now()
    series = usage_series(
        granularity="hour",
        since=floor_hour(now) - timedelta(hours=23),
        until=now,
        deployment_id=deployment.pk,
    )
    return charts.hourly_chart(series, now=now)


@page
@require_GET
def instance(request: HttpRequest, deployment_id: uuid.UUID) -> HttpResponse:
    deployment = _deployment(request, deployment_id)
    keys = list(
        key_selectors.key_list_for_owner(owner_id=_owner_id(request), deployment_id=deployment.pk)
    )
    usage = usage_24h_for_keys(key_ids=[key.pk for key in keys])
    gateway_url = request.build_absolute_uri("/v1")
    return render(
        request,
        "console/instance.html",
        {
            "deployment": deployment,
            "events": deployment_selectors.deployment_event_list(deployment_id=deployment.pk)[:50],
            "keys": [(key, usage.get(key.pk)) for key in keys],
            "chart": _usage_chart(deployment),
            "gateway_url": gateway_url,
            "now": timezone.now(),
            "nav": "instances",
        },
    )


@page
@require_POST
def instance_stop(request: HttpRequest, deployment_id: uuid.UUID) -> HttpResponse:
    deployment = _deployment(request, deployment_id)

    def stop() -> str:
        deployment_services.deployment_stop(deployment_id=deployment.pk, actor=_actor(request))
        return f"Stopped {deployment.model_id}: its keys are revoked."

    return _after_action(request, stop, back=_back(request, reverse("console:instances")))


@page
@require_POST
def instance_extend(request: HttpRequest, deployment_id: uuid.UUID) -> HttpResponse:
    deployment = _deployment(request, deployment_id)

    def extend() -> str:
        data = _validated(
            DeploymentExtendInputSerializer, _form_data(request, integers=("pack_hours",))
        )
        deployment_services.deployment_extend(
            deployment_id=deployment.pk, pack_hours=data["pack_hours"], actor=_actor(request)
        )
        return f"Extended {deployment.model_id} by {data['pack_hours']} h."

    return _after_action(request, extend, back=_back(request, reverse("console:instances")))


def _back(request: HttpRequest, default: str) -> str:
    """Where a form goes back to: its `next` when it is one of the console's own paths."""
    wanted = request.POST.get("next", "")
    if wanted.startswith("/console/") and "//" not in wanted and "\\" not in wanted:
        return wanted
    return default


# --- API Keys -------------------------------------------------------------------------------------


def _keys_url(deployment_id: object) -> str:
    return f"{reverse('console:keys')}?instance={deployment_id}"


@page
@require_GET
def keys(request: HttpRequest) -> HttpResponse:
    owner_id = _owner_id(request)
    deployments = list(deployment_selectors.deployment_list_for_owner(owner_id=owner_id))
    chosen: Deployment | None = None
    wanted = request.GET.get("instance")
    if wanted:
        chosen = _deployment(request, wanted)  # type: ignore[arg-type]
    else:
        chosen = next((d for d in deployments if d.status in _LIVE), None) or next(
            iter(deployments), None
        )
    rows: list[tuple[ApiKey, Any]] = []
    if chosen is not None:
        found = list(key_selectors.key_list_for_owner(owner_id=owner_id, deployment_id=chosen.pk))
        usage = usage_24h_for_keys(key_ids=[key.pk for key in found])
        rows = [(key, usage.get(key.pk)) for key in found]
    return render(
        request,
        "console/keys.html",
        {
            "deployments": deployments,
            "chosen": chosen,
            "rows": rows,
            "nav": "keys",
            "now": timezone.now(),
        },
    )


@page
@require_POST
def key_create(request: HttpRequest, deployment_id: uuid.UUID) -> HttpResponse:
    deployment = _deployment(request, deployment_id)
    back = _keys_url(deployment.pk)
    try:
        data = _validated(
            KeyCreateInputSerializer,
            _form_data(
                request,
                text=("name",),
                integers=("rate_limit_rpm", "rate_limit_tpm"),
                datetimes=("expires_at",),
            ),
        )
        key, secret = key_services.key_create(
            deployment_id=deployment.pk,
            name=data["name"],
            actor=_actor(request),
            expires_at=data.get("expires_at"),
            rate_limit_rpm=data.get("rate_limit_rpm"),
            rate_limit_tpm=data.get("rate_limit_tpm"),
        )
    except DomainError as exc:
        return _refused_dialog(request, exc, back=back)
    return _shown_once(
        request,
        title=f"Key “{key.name}” created",
        secret=secret,
        note="Copy it now: it is shown this once and cannot be shown again.",
        back=back,
        status=201,
    )


@page
@require_POST
def key_reveal(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = _key(request, key_id)
    back = _keys_url(key.deployment_id)
    try:
        secret = key_services.key_reveal_default(key_id=key.pk, actor=_actor(request))
    except DomainError as exc:
        return _refused_dialog(request, exc, back=back)
    return _shown_once(
        request,
        title="The default key",
        secret=secret,
        note="Copy it now: it is revealed this once and cannot be shown again.",
        back=back,
    )


@page
@require_POST
def key_roll(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = _key(request, key_id)
    back = _keys_url(key.deployment_id)
    try:
        data = _validated(KeyRollInputSerializer, _form_data(request, integers=("grace_seconds",)))
        new, secret = key_services.key_roll(
            key_id=key.pk,
            actor=_actor(request),
            grace_seconds=data.get("grace_seconds", key_services.DEFAULT_ROLL_GRACE_SECONDS),
        )
    except DomainError as exc:
        return _refused_dialog(request, exc, back=back)
    return _shown_once(
        request,
        title=f"Key “{new.name}” rolled",
        secret=secret,
        note=(
            "This is the new key; the old one stops working when its grace period ends. "
            "Copy it now: it is shown this once."
        ),
        back=back,
        status=201,
    )


@page
def key_edit(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = _key(request, key_id)
    refusal: dict[str, Any] | None = None
    if request.method == "POST":
        try:
            data = _validated(
                KeyUpdateInputSerializer,
                _form_data(
                    request,
                    text=("name",),
                    integers=("rate_limit_rpm", "rate_limit_tpm"),
                    datetimes=("expires_at",),
                    clear_blank=True,
                ),
            )
            key_services.key_update(key_id=key.pk, actor=_actor(request), **data)
        except DomainError as exc:
            refusal = _refusal(exc)
        else:
            messages.success(request, f"Saved key “{key.name}”.")
            return HttpResponseRedirect(_keys_url(key.deployment_id))
    elif request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    return render(
        request,
        "console/key_edit.html",
        {"key": key, "refusal": refusal, "form": request.POST, "nav": "keys"},
        status=refusal["status"] if refusal else 200,
    )


@page
@require_POST
def key_revoke(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = _key(request, key_id)

    def revoke() -> str:
        key_services.key_revoke(key_id=key.pk, actor=_actor(request))
        return f"Revoked key “{key.name}” ({key.masked})."

    return _after_action(request, revoke, back=_keys_url(key.deployment_id))


# --- Webhooks -------------------------------------------------------------------------------------


@page
@require_GET
def webhooks(request: HttpRequest) -> HttpResponse:
    endpoints = webhook_selectors.webhook_endpoint_list_for_owner(owner_id=_owner_id(request))
    return render(
        request,
        "console/webhooks.html",
        {"endpoints": endpoints, "event_types": SUBSCRIBABLE_TYPES, "nav": "webhooks"},
    )


@page
@require_POST
def webhook_create(request: HttpRequest) -> HttpResponse:
    back = reverse("console:webhooks")
    try:
        events = request.POST.getlist("events")
        data = _validated(
            WebhookEndpointCreateInputSerializer,
            {"url": request.POST.get("url", ""), "events": events},
        )
        endpoint, secret = webhook_services.webhook_endpoint_create(
            owner_id=_owner_id(request), url=data["url"], events=data["events"]
        )
    except DomainError as exc:
        return _refused_dialog(request, exc, back=back)
    return _shown_once(
        request,
        title=f"Webhook added: {endpoint.url}",
        secret=secret,
        note=(
            "Its signing secret: verify each delivery's webhook-signature with it. "
            "Copy it now: it is shown this once."
        ),
        back=back,
        status=201,
    )


@page
@require_GET
def webhook(request: HttpRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    return render(
        request,
        "console/webhook.html",
        {
            "endpoint": endpoint,
            "deliveries": webhook_selectors.webhook_delivery_list(endpoint=endpoint)[:50],
            "nav": "webhooks",
        },
    )


@page
@require_POST
def webhook_test(request: HttpRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)

    def ping() -> str:
        webhook_services.webhook_endpoint_ping(endpoint=endpoint)
        return "A ping event is on its way."

    return _after_action(request, ping, back=reverse("console:webhook", args=[endpoint.pk]))


@page
@require_POST
def webhook_delete(request: HttpRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)

    def delete() -> str:
        webhook_services.webhook_endpoint_delete(endpoint=endpoint)
        return f"Deleted the webhook {endpoint.url}."

    return _after_action(request, delete, back=reverse("console:webhooks"))
