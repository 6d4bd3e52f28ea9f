"""Identifiers: row ids sort by time and count up; ids that act as bearer secrets cannot be guessed from another."""

from __future__ import annotations

from widget_server.ids import _ALPHABET, new_id, new_unguessable_id, new_visitor_id


def _random_part(ident: str) -> int:
    value = 0
    for ch in ident.split("_", 1)[1][10:]:
        value = value * 32 + _ALPHABET.index(ch)
    return value


def test_row_ids_are_strictly_increasing() -> None:
    ids = [new_id("msg") for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_a_conversation_id_says_nothing_of_the_next_one() -> None:
    """Made in the same millisecond, row ids differ by one; these must not (a widget resumes with them)."""
    ids = [new_unguessable_id("conv") for _ in range(2000)]
    same_ms = [(a, b) for a, b in zip(ids, ids[1:], strict=False) if a[:15] == b[:15]]
    assert same_ms, "no two ids in one millisecond: nothing was checked"
    assert all(abs(_random_part(b) - _random_part(a)) > 1 << 32 for a, b in same_ms)
    assert sorted(ids, key=lambda i: i[:15]) == ids  # still sortable by creation time, to the millisecond


def test_visitor_ids_are_128_random_bits() -> None:
    ids = {new_visitor_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("vis_") and len(i) == 4 + 22 for i in ids)
