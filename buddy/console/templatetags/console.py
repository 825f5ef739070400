"""Presentation filters of the console's templates (formatting only, no rules)."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def time_left(ends_at: datetime | None, now: datetime | None = None) -> str:
    """ "2 h 05 min" until `ends_at` ("ended" once past)."""
    if ends_at is None:
        return "—"
    seconds = int((ends_at - (now or timezone.now())).total_seconds())
    if seconds <= 0:
        return "ended"
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours >= 48:
        return f"{hours // 24} d {hours % 24} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min" if minutes else "< 1 min"


@register.filter
def utc(value: datetime | None) -> str:
    """A moment as "2026-12-03 13:05 UTC" ("—" for none)."""
    if value is None:
        return "—"
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


@register.filter
def get(mapping: dict[str, object] | None, name: str) -> object:
    return (mapping or {}).get(name, "")


@register.filter
def pack(hours: int) -> str:
    """A pack's length: "1 h", "24 h (1 day)", "168 h (1 week)"."""
    if hours == 168:
        return "168 h (1 week)"
    if hours % 24 == 0:
        days = hours // 24
        return f"{hours} h ({days} day{'s' if days > 1 else ''})"
    return f"{hours} h"


@register.filter
def events_label(events: list[str]) -> str:
    """A webhook's subscription: "every event" for ["*"]."""
    return "every event" if list(events) == ["*"] else ", ".join(events)
