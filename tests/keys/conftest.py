"""Fixtures of the lookup's tests (sync and async)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from buddy.accounts.selectors import service_token_cache
from keys import hashing
from keys.lookup import cache as lookup_cache
from keys.lookup import usage


@pytest.fixture
def fresh_lookup_state() -> Iterator[None]:
    """No service token, breaker state or pending last use carried from one test to the next."""
    service_token_cache.clear()
    lookup_cache.breaker.reset()
    usage.recorder.take()
    yield
    service_token_cache.clear()
    lookup_cache.breaker.reset()
    usage.recorder.take()


@pytest.fixture
def argon2_calls(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """Counts argon2 verifications (the only place a lookup can run one)."""
    calls: list[int] = []
    real = hashing.verify_key

    def counting(stored_hash: str, plaintext: str) -> bool:
        calls.append(1)
        return real(stored_hash, plaintext)

    monkeypatch.setattr(hashing, "verify_key", counting)
    return calls
