import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys import tokens

ALPHABET = tokens.ALPHABET


def _base62(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = ALPHABET[r] + out
    return out.rjust(6, "0")


def test_generated_key_has_the_contract_format():
    key = tokens.generate()
    text = key.plaintext
    assert text.startswith("ob_sk_")
    assert len(text) == len("ob_sk_") + 48
    assert all(ch in ALPHABET for ch in text[6:])
    assert key.public_id == text[6:18]
    # The checksum is the contract's: CRC32 of everything before it, base62, 6 chars.
    assert text[-6:] == _base62(zlib.crc32(text[:-6].encode("ascii")))


def test_generated_key_parses_back_to_its_public_id():
    key = tokens.generate()
    parsed = tokens.parse(key.plaintext)
    assert parsed.public_id == key.public_id
    assert parsed.plaintext == key.plaintext


def test_generated_keys_differ():
    assert len({tokens.generate().plaintext for _ in range(200)}) == 200


def test_repr_of_a_parsed_key_hides_the_plaintext():
    key = tokens.generate()
    assert key.plaintext not in repr(key)
    assert key.plaintext not in str(key)


@given(position=st.integers(min_value=0, max_value=53), replacement=st.sampled_from(ALPHABET + "_"))
def test_any_one_character_change_of_a_valid_key_is_rejected(position, replacement):
    valid = tokens.generate().plaintext
    if valid[position] == replacement:
        return
    changed = valid[:position] + replacement + valid[position + 1 :]
    with pytest.raises(tokens.MalformedKey):
        tokens.parse(changed)


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "ob_sk_",
        "sk-" + "a" * 48,
        "OB_SK_" + "a" * 48,
        "ob_pk_" + "a" * 48,
        "ob_sk_" + "a" * 47,
        "ob_sk_" + "a" * 49,
        "ob_sk_" + "a" * 47 + "-",
        "ob_sk_" + "é" * 48,
        " ob_sk_" + "a" * 48,
    ],
)
def test_malformed_keys_are_rejected(candidate):
    with pytest.raises(tokens.MalformedKey):
        tokens.parse(candidate)


def test_non_strings_are_rejected():
    with pytest.raises(tokens.MalformedKey):
        tokens.parse(None)  # type: ignore[arg-type]


def test_mask_shows_only_the_public_id():
    key = tokens.generate()
    assert tokens.mask(key.public_id) == f"ob_sk_{key.public_id}…"


@given(
    body=st.text(alphabet=ALPHABET, min_size=42, max_size=42),
    suffix=st.one_of(st.none(), st.text(alphabet=ALPHABET, min_size=6, max_size=6)),
)
def test_a_key_parses_exactly_when_its_last_six_characters_are_the_checksum(body, suffix):
    """`parse` compares the checksum's value with the CRC (no encoding): the same verdict as
    comparing the text of the checksum, for the right one and for any other."""
    head = "ob_sk_" + body
    given = tokens.checksum(head) if suffix is None else suffix
    valid = given == _base62(zlib.crc32(head.encode("ascii")))
    if valid:
        assert tokens.parse(head + given).plaintext == head + given
    else:
        with pytest.raises(tokens.MalformedKey):
            tokens.parse(head + given)
