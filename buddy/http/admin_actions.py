"""Plumbing shared by the admin pages and actions of deployments and keys.

Actions that need input (a pack length, a revoke reason) show an intermediate form page; its
submit posts back to the changelist with the same action and selection, and the action then runs
with the cleaned form. Every action reports per object: done, or skipped and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Model, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest
from django.template.response import TemplateResponse

from buddy.core.errors import DomainError


class ReadOnlyTabularInline(admin.TabularInline):
    """A history shown on its parent's page: every field read-only, nothing added, changed or
    deleted there (the services act; the admin shows)."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RefuseSecretLookups(admin.ModelAdmin):
    """A model admin that refuses every URL lookup touching a hash or digest field.

    Django's admin filters a changelist by any lookup on the model's own fields given in the query
    string (`?secret_hash__startswith=$argon2id$...`): whoever can see the list could read a hash
    out character by character. A lookup naming one of `secret_fields`, at any depth, is refused
    (Django answers 400) as Django's own UserAdmin does for passwords."""

    secret_fields: frozenset[str] = frozenset()

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if self.secret_fields.intersection(lookup.split(LOOKUP_SEP)):
            return False
        return super().lookup_allowed(lookup, value, request)  # type: ignore[arg-type]


def operator_actor(request: HttpRequest) -> str:
    """The actor string the services record for an operator's action."""
    return f"operator:{request.user.get_username()}"


def form_or_page(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    form_class: type[forms.Form],
    action: str,
    title: str,
    intro: str,
    submit_label: str,
) -> tuple[forms.Form | None, TemplateResponse | None]:
    """(the valid form, None) once the intermediate page was submitted, else (None, the page)."""
    if "apply" in request.POST:
        form = form_class(request.POST)
        if form.is_valid():
            return form, None
    else:
        form = form_class()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "submit_label": submit_label,
        "form": form,
        "queryset": queryset,
        "opts": modeladmin.model._meta,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": modeladmin.media + form.media,
    }
    request.current_app = modeladmin.admin_site.name
    return None, TemplateResponse(request, "admin/buddy/action_form.html", context)


def apply_each(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    objects: Iterable[Model],
    act: Callable[[Model], object],
    *,
    done: str,
) -> None:
    """Run `act` on each object (a service call); report how many were done and why others not.

    A refusal of the service (a deployment already ended, a bad pack length) skips that object
    and is reported; it never turns into a 500 nor stops the others.
    """
    count = 0
    for obj in objects:
        try:
            act(obj)
        except DomainError as exc:
            modeladmin.message_user(request, f"{obj}: skipped, {_reason(exc)}", messages.WARNING)
        else:
            count += 1
    if count:
        modeladmin.message_user(request, done.format(count=count), messages.SUCCESS)


def _reason(exc: DomainError) -> str:
    fields = exc.fields
    if fields:
        return "; ".join(f"{name}: {' '.join(errors)}" for name, errors in fields.items())
    return exc.message
