"""Offset units: Python code points (default), UTF-16 code units (BioC's Java and JavaScript
tools) and UTF-8 bytes. Converting is per passage: a position inside a passage's text becomes
``passage.offset`` plus the length of the text before it, counted in the unit."""

from __future__ import annotations

from bisect import bisect_left
from enum import Enum
from functools import lru_cache


class OffsetUnit(str, Enum):
    CODEPOINT = "codepoint"
    UTF16 = "utf16"
    UTF8 = "utf8"


def _char_length(ch: str, unit: OffsetUnit) -> int:
    code = ord(ch)
    if unit is OffsetUnit.UTF16:
        return 2 if code > 0xFFFF else 1  # astral characters are surrogate pairs
    return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4


@lru_cache(maxsize=8)  # conversions go passage by passage: a few suffice, and each may be MBs
def _prefix(text: str, unit: OffsetUnit) -> tuple[int, ...]:
    """``out[i]``: the length of ``text[:i]`` in ``unit``; built once per passage and unit."""
    out = [0]
    for ch in text:
        out.append(out[-1] + _char_length(ch, unit))
    return tuple(out)


def length(text: str, unit: OffsetUnit) -> int:
    """``text``'s length in ``unit``."""
    if unit is OffsetUnit.CODEPOINT or text.isascii():
        return len(text)
    return _prefix(text, unit)[-1]


def to_units(text: str, position: int, unit: OffsetUnit) -> int:
    """Code-point ``position`` in ``text`` -> the same position in ``unit``."""
    if unit is OffsetUnit.CODEPOINT or text.isascii():
        return position
    return _prefix(text, unit)[position]


def from_units(text: str, offset: int, unit: OffsetUnit) -> int:
    """Position ``offset`` in ``unit`` -> code points; ``ValueError`` when it falls inside a character."""
    if unit is OffsetUnit.CODEPOINT or text.isascii():
        if not 0 <= offset <= len(text):
            raise ValueError(f"offset {offset} outside a text of {len(text)} characters")
        return offset
    prefix = _prefix(text, unit)
    i = bisect_left(prefix, offset)
    if i == len(prefix):
        raise ValueError(f"{unit.value} offset {offset} outside a text of {prefix[-1]} {unit.value} units")
    if prefix[i] != offset:
        raise ValueError(f"{unit.value} offset {offset} falls inside character {i - 1} ({text[i - 1]!r})")
    return i
