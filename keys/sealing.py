"""Sealing of the default key's secret between its creation and its single reveal."""

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
