"""argon2id verifiers of API keys, with parameters from settings."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from django.conf import settings


@cache
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
    )


def hasher() -> PasswordHasher:
    return _hasher(
        settings.BUDDY_ARGON2_TIME_COST,
        settings.BUDDY_ARGON2_MEMORY_COST,
        settings.BUDDY_ARGON2_PARALLELISM,
    )


def hash_key(plaintext: str) -> str:
    return hasher().hash(plaintext)


def verify_key(stored_hash: str, plaintext: str) -> bool:
    """Constant-time check of a presented key against its stored argon2id hash."""
    try:
        return hasher().verify(stored_hash, plaintext)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
