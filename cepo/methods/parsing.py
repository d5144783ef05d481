"""Reading the model's ratings, comparisons and lists of approaches out of its free text."""

from __future__ import annotations

import re

_RATING = re.compile(r"rating\s*(?:is|:|=)?\s*\[*\s*(\d+(?:\.\d+)?)(?:\s*/\s*10)?", re.IGNORECASE)
_PREFERENCE = re.compile(
    r"better\s*(?:answer|response)?\s*(?:is|:|=)?\s*\[*\s*(?:answer\s*)?([AB])\b", re.IGNORECASE
)
_LIST_ITEM = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•])\s*(.+?)\s*$", re.MULTILINE)
_MARKUP = re.compile(r"[*_`]+")

MAX_RATING = 10.0


def parse_rating(text: str) -> float | None:
    """The last "Rating: N" in `text`, clipped to 0-10; None when there is none."""
    found = _RATING.findall(text)
    return min(float(found[-1]), MAX_RATING) if found else None


def parse_preference(text: str) -> int | None:
    """0 when the text ends up preferring answer A, 1 for B, None when it says neither."""
    found = _PREFERENCE.findall(text)
    return None if not found else "AB".index(found[-1].upper())


def parse_approaches(text: str, n: int) -> list[str]:
    """The first `n` items of the numbered or bulleted list in `text`."""
    items = [_MARKUP.sub("", item).strip() for item in _LIST_ITEM.findall(text)]
    return [item for item in items if item][:n]


def cut_repetition(text: str, shortest: int = 12) -> str:
    """`text` up to where a sentence or line (of at least `shortest` characters) comes back a second
    time: a small model's reply that starts repeating itself has said all it will."""
    seen: set[str] = set()
    kept: list[str] = []
    for piece in _PIECES.findall(text):
        key = " ".join(piece.split())
        if len(key) >= shortest and key in seen:
            break
        seen.add(key)
        kept.append(piece)
    return "".join(kept).rstrip()


_PIECES = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)[ \t]*|\n")
