"""`redact` skips a case-insensitive pattern's scan when the text cannot contain its words: the
answers must be exactly those of scanning with every pattern, for any text."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from buddy.ops import logging as buddy_logging
from buddy.ops.logging import redact


def redact_by_every_pattern(text: str) -> str:
    for pattern, replacement in buddy_logging._PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# Letters `re.IGNORECASE` takes for those of the hinted words, awkward Unicode included (dotted
# and dotless i, the Kelvin sign, the long s), and what surrounds a credential.
ALPHABET = (
    "BbEeAaRrSsIiCcTtOoKkNnPpWwDdYyUuHhZz\u0130\u0131\u212a\u017f \t\n:=._-/+~\"'\\\\"
    "ob_sk_svc0123456789xyzXYZ"
)


def test_every_case_insensitive_pattern_has_hint_words():
    for pattern, _ in buddy_logging._PATTERNS:
        if pattern.flags & re.IGNORECASE:
            assert buddy_logging._HINTS.get(pattern.pattern), pattern.pattern


def test_awkward_spellings_are_redacted_exactly_as_before():
    for text in (
        "Authorization: Bearer abc.def",
        "BAS\u0130C  dXNlcjpwYXNz",
        "ba\u017fic abc",
        "Bas\u0131c abcdef",
        "To\u212aen abcdefghijk",
        "token expired",
        "bearer\nxyz Bearer Bearer q",
        "ob_sk_abcdefghijklmnop ob_svc_abcdefghijkl Token 12345678",
    ):
        assert redact(text) == redact_by_every_pattern(text), text
    assert "abcdefghijk" not in redact("To\u212aen abcdefghijk")


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=60))
def test_redact_is_the_same_as_scanning_with_every_pattern(text: str):
    assert redact(text) == redact_by_every_pattern(text)


# Pieces of credentials' names and their surroundings, spelled in the ways `re.IGNORECASE` equates,
# so that texts drawn from them often come close to matching the secret-name patterns.
FRAGMENTS = [
    "token", "TO\u212aEN", "secret", "SECRET", "pa\u017f\u017fword", "PASSWD", "api_key", "APIKEY",
    "author\u0131zation", "Author\u0130zation", "bearer", "basic", "access_", "x-", "=", " = ",
    ":", '"', "'", '\\"', "\\n", " ", "&", "abcdefghij", "ob_sk_", "0123456789",
]  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join))
def test_redact_is_the_same_for_texts_of_credential_names(text: str):
    assert redact(text) == redact_by_every_pattern(text)
