"""The `ob_sk_` key format: generation and parsing, with no I/O.

`ob_sk_` + 48 base62 characters: a 12-character public id, 30 random characters and a
6-character checksum (CRC32 of everything before it, in base62, most significant digit first).
Parsing refuses a wrong prefix, length, alphabet or checksum before any database or hash work.
"""

from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import dataclass

PREFIX = "ob_sk_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PUBLIC_ID_LENGTH = 12
RANDOM_LENGTH = 30
CHECKSUM_LENGTH = 6
BODY_LENGTH = PUBLIC_ID_LENGTH + RANDOM_LENGTH + CHECKSUM_LENGTH
KEY_LENGTH = len(PREFIX) + BODY_LENGTH

_KEY_RE = re.compile(rf"{PREFIX}[0-9A-Za-z]{{{BODY_LENGTH}}}", re.ASCII)


class MalformedKey(ValueError):
    """The string is not a well-formed `ob_sk_` key (prefix, length, alphabet or checksum)."""


@dataclass(frozen=True, slots=True)
class ParsedKey:
    public_id: str
    plaintext: str

    def __repr__(self) -> str:  # never let the plaintext reach a log line through a repr
        return f"ParsedKey(public_id={self.public_id!r})"


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode("ascii")), CHECKSUM_LENGTH)


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def generate() -> ParsedKey:
    """A new random key. Its plaintext must be shown once and then forgotten."""
    head = PREFIX + _random_base62(PUBLIC_ID_LENGTH + RANDOM_LENGTH)
    plaintext = head + checksum(head)
    return ParsedKey(
        public_id=plaintext[len(PREFIX) : len(PREFIX) + PUBLIC_ID_LENGTH], plaintext=plaintext
    )


_DIGIT_VALUES = {digit: value for value, digit in enumerate(ALPHABET)}


def _base62_value(digits: str) -> int:
    value = 0
    for digit in digits:
        value = value * 62 + _DIGIT_VALUES[digit]
    return value


def parse(candidate: str) -> ParsedKey:
    """Check the form of a presented key; raise MalformedKey if it cannot be one of ours."""
    if not isinstance(candidate, str) or _KEY_RE.fullmatch(candidate) is None:
        raise MalformedKey("not an ob_sk_ key")
    head, given = candidate[:-CHECKSUM_LENGTH], candidate[-CHECKSUM_LENGTH:]
    # The given checksum's value against the CRC (`checksum(head) != given`, without encoding:
    # six base62 digits name each number below 62**6 > 2**32 once).
    if _base62_value(given) != zlib.crc32(head.encode("ascii")):
        raise MalformedKey("checksum mismatch")
    return ParsedKey(
        public_id=candidate[len(PREFIX) : len(PREFIX) + PUBLIC_ID_LENGTH], plaintext=candidate
    )


def mask(public_id: str) -> str:
    return f"{PREFIX}{public_id}…"
