"""`Word`, the base of the toolkit's enums of words (families, content kinds, boot kinds...)."""

from __future__ import annotations

from enum import Enum


class Word(str, Enum):
    """An enum whose members are the words they stand for: `str()` and f-strings give the value
    on every Python (3.11 changed what format() of a mixed-in enum prints; StrEnum is 3.11+)."""

    def __str__(self) -> str:
        return str(self.value)
