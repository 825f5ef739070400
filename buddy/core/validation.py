"""Checks of input that several apps share, raising the catalogue's `validation_error`."""

from __future__ import annotations

from buddy.core.errors import ValidationFailed


def validate_name(name: object, *, max_length: int = 100) -> str:
    """A non-blank name of at most `max_length` characters, stripped (keys, service tokens)."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed(fields={"name": ["A non-blank name is required."]})
    name = name.strip()
    if len(name) > max_length:
        raise ValidationFailed(fields={"name": [f"At most {max_length} characters."]})
    return name
