"""Deterministic randomness: stable hashes and seeded `Random`s, pure functions of what they describe."""

from __future__ import annotations

import datetime as dt
import zlib
from functools import lru_cache
from random import Random

# Every value is a pure function of (seed, what it describes, time): no state evolves from message to
# message, so a restarted simulator regenerates the same messages under the same names, byte for byte.

_MASK64 = (1 << 64) - 1
TWO_63 = float(1 << 63)


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash step."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


@lru_cache(maxsize=4096)
def text_hash(text: str) -> int:
    return _mix64(zlib.crc32(text.encode()) | len(text) << 32)


def stable_hash(*parts: int | str) -> int:
    # The tuple hash of ints is the same in every process (unlike str hashes, which PYTHONHASHSEED salts,
    # hence text_hash); one mixing step spreads it.
    return _mix64(hash(tuple(p if p.__class__ is int else text_hash(p) for p in parts)) & _MASK64)


def unit_interval(*parts: int | str) -> float:
    """Uniform in [0, 1), a function of `parts`."""
    return stable_hash(*parts) / (2 * TWO_63)


def seeded_rng(*parts: int | str) -> Random:
    return Random(stable_hash(*parts))


def epoch_seconds(t: dt.datetime) -> int:
    return int(t.timestamp())
