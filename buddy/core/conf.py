"""Values derived from the settings, computed once per process instead of on every request.

`django.conf.settings` is a lazy object: each attribute read goes through `__getattribute__` and
`__getattr__` (~1 us apiece), which the hot paths (the gateway, the lookup) would pay several
times per request for values that do not change. A function decorated with `per_settings` is
called once and its answer kept until Django's `setting_changed` signal (sent by
`override_settings` and pytest-django's `settings` fixture) forgets every kept answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.signals import setting_changed

T = TypeVar("T")

_kept: list[functools._lru_cache_wrapper[Any]] = []


def per_settings(fn: Callable[[], T]) -> Callable[[], T]:
    """`fn()`'s answer, kept until a setting changes."""
    kept = functools.cache(fn)
    _kept.append(kept)
    return kept


def forget(**_kwargs: object) -> None:
    """Forget every kept answer (on `setting_changed`)."""
    for kept in _kept:
        kept.cache_clear()


setting_changed.connect(forget, dispatch_uid="buddy.core.conf.forget")
