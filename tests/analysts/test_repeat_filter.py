"""``follow_view`` remembers which records it has read by a digest, not by their bytes."""

from __future__ import annotations

import tracemalloc

from broker.kafka.public_reader import RepeatFilter

RECORDS = 2000
VALUE_BYTES = 4096


def test_a_re_emitted_record_is_a_repeat_and_a_changed_one_is_not() -> None:
    seen = RepeatFilter()
    assert not seen.repeat(b"k", b"v1")
    assert seen.repeat(b"k", b"v1")
    assert not seen.repeat(b"k", b"v2")  # a changed window replaces the last one
    assert not seen.repeat(b"k", b"v1")
    assert not seen.repeat(b"other", b"v1")


def test_memory_grows_by_a_digest_per_key_not_by_the_values_read() -> None:
    keys = [f"window-{i:06d}".encode() for i in range(RECORDS)]
    seen = RepeatFilter()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, key in enumerate(keys):
            assert not seen.repeat(key, i.to_bytes(4, "big") * (VALUE_BYTES // 4))
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Holding the values would keep RECORDS x 4 KiB (8 MiB); a digest per key is ~100 bytes.
    assert kept < RECORDS * 200, kept
