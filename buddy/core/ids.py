from __future__ import annotations

import uuid


def as_uuid(value: object) -> uuid.UUID | None:
    """The UUID a path or body gave, or None when it is not one (callers answer 404)."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
