"""Helpers the patterns share: normalising answers, formatting transcripts."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_SPACE = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\s\"'`*.,:;!?()\[\]]+|[\s\"'`*.,:;!?()\[\]]+$")


def normalise(answer: str) -> str:
    """Case-folded, whitespace-collapsed, edge punctuation stripped: 'Yes.' == 'yes'."""
    return _EDGE_PUNCT.sub("", _SPACE.sub(" ", answer)).casefold()


def majority(answers: Sequence[str]) -> tuple[str, int]:
    """The most common normalised answer (ties: the earliest) as first written, and its count."""
    counts = Counter(normalise(a) for a in answers)
    best = max(counts.values())
    for answer in answers:
        if counts[normalise(answer)] == best:
            return answer, best
    raise ValueError("no answers")


def sections(title: str, entries: Sequence[tuple[str, str]]) -> str:
    body = "\n\n".join(f"### {who}\n{text}" for who, text in entries)
    return f"## {title}\n\n{body}" if entries else f"## {title}\n\n(none yet)"


def first_word(text: str) -> str:
    stripped = text.strip()
    return normalise(stripped.split()[0]) if stripped else ""
