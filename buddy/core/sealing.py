"""Sealing (Fernet, keyed by `BUDDY_SEALING_KEY`) of the few secrets buddy must be able to read
back: a default key's secret until its single reveal, a webhook endpoint's signing secret."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    return Fernet(settings.BUDDY_SEALING_KEY.encode())


def seal(plaintext: str) -> bytes:
    return _fernet().encrypt(plaintext.encode())


def unseal(sealed: bytes) -> str:
    try:
        return _fernet().decrypt(bytes(sealed)).decode()
    except InvalidToken as exc:  # the sealing key changed: the secret cannot be recovered
        raise ValueError("the sealed secret cannot be opened with the current sealing key") from exc
