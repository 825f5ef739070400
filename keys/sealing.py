"""Sealing of the default key's secret between its creation and its single reveal (the kernel's
`buddy.core.sealing`, which webhook secrets share)."""

from __future__ import annotations

from buddy.core.sealing import seal, unseal

__all__ = ["seal", "unseal"]
