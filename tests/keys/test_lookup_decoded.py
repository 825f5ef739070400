"""A cached entry's bytes are decoded once per process (`cache.decoded`), and its snapshot made once
per decoded entry: a hit reuses both while the bytes stay the same, new bytes are decoded anew,
and the memory they take is bounded."""

from __future__ import annotations

from keys.lookup import cache, selectors


def _entry(model: str, revoked: bool = False) -> cache.Entry:
    return cache.Entry(
        key_hmac="a" * 64,
        key_id="3f1e0c8e-1111-4222-8333-944455556666",
        deployment_id="9c1e0c8e-1111-4222-8333-944455556666",
        epoch="run",
        generation="1.0",
        revoked=revoked,
        deployment_status="ready",
        model=model,
        endpoint_url="http://upstream.example",
        pack_ends_at=2_000_000_000.0,
    )


def test_the_same_bytes_give_the_same_entry_and_snapshot_and_new_bytes_new_ones() -> None:
    raw = _entry("gemma4:26b").encode().encode()
    first = cache.decoded.entry(raw)
    assert first == _entry("gemma4:26b")
    assert cache.decoded.entry(bytes(raw)) is first  # equal bytes, another object: the same entry
    snapshot = selectors._snapshot_of_entry("abcdefghijkl", first)
    assert selectors._snapshot_of_entry("abcdefghijkl", first) is snapshot
    assert snapshot.model == "gemma4:26b" and snapshot.public_id == "abcdefghijkl"
    assert snapshot.pack_ends_at is not None and snapshot.pack_ends_at.timestamp() == 2e9

    revoked = cache.decoded.entry(_entry("gemma4:26b", revoked=True).encode().encode())
    assert revoked is not None and revoked.revoked
    assert selectors._snapshot_of_entry("abcdefghijkl", revoked).revoked
    # Another public id never gets a snapshot made for the first one.
    assert selectors._snapshot_of_entry("mnopqrstuvwx", first).public_id == "mnopqrstuvwx"


def test_bytes_of_another_layout_decode_to_no_entry_and_the_memo_stays_bounded() -> None:
    assert cache.decoded.entry(b"dep|run|[2,1,2]") is None
    for n in range(cache.decoded.LIMIT + 10):
        cache.decoded.entry(_entry(f"model-{n}").encode().encode())
    assert len(cache.decoded.entries) <= cache.decoded.LIMIT
    for n in range(cache.decoded.LIMIT + 10):
        entry = cache.decoded.entry(_entry(f"model-{n}").encode().encode())
        assert entry is not None
        selectors._snapshot_of_entry("abcdefghijkl", entry)
    assert len(selectors._snapshots) <= cache.decoded.LIMIT
