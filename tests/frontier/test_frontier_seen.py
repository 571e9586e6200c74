"""The compact seen set is exact: it answers like a `set[int]` of 64-bit fingerprints, in far fewer bytes."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.frontier.memory import SeenSet
from crawler.model.seen import CompactSeenSet

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(u64, max_size=300), st.lists(u64, max_size=50))
def test_it_answers_exactly_like_a_python_set(added: list[int], probes: list[int]) -> None:
    seen = CompactSeenSet()
    reference: set[int] = set()
    for fp in added:
        assert seen.add(fp) == (fp not in reference)
        reference.add(fp)
    assert len(seen) == len(reference)
    for fp in added + probes:
        assert (fp in seen) == (fp in reference)
    assert sorted(seen) == sorted(reference)


def test_zero_and_the_largest_fingerprint_are_ordinary_members() -> None:
    seen = CompactSeenSet()
    assert 0 not in seen
    assert seen.add(0) and not seen.add(0)
    assert seen.add((1 << 64) - 1) and not seen.add((1 << 64) - 1)
    assert 0 in seen and len(seen) == 2


def test_growing_keeps_every_member_and_stays_compact() -> None:
    rng = random.Random(7)
    fps = [rng.getrandbits(64) for _ in range(200_000)]
    seen = SeenSet()
    assert seen.update(fps) == len(set(fps))
    assert all(fp in seen for fp in fps[::97])
    assert rng.getrandbits(64) not in seen
    # 8 bytes a slot, tables kept 53-80% full.
    assert seen.nbytes / len(seen) < 16


def test_a_presized_set_does_not_grow() -> None:
    seen = CompactSeenSet(expected=50_000)
    size = seen.nbytes
    seen.update(random.Random(1).getrandbits(64) for _ in range(50_000))
    assert seen.nbytes == size
