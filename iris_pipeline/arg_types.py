"""Argument types for the command line: numbers that must be in range, checked by argparse, so a
nonsense value (`--count -5`, `--speed 0`, NaN) is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def number(kind: Callable[[str], float], ok: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in its message
    return parse


positive_int = number(int, lambda v: v > 0, "a whole number above 0")
non_negative_int = number(int, lambda v: v >= 0, "a whole number, 0 or more")
positive_number = number(float, lambda v: v > 0, "a number above 0")
non_negative_number = number(float, lambda v: v >= 0, "a number, 0 or more")
