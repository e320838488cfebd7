"""The agents a launch asks for: `--personas implementer=3,reviewer=1`, parsed strictly and bounded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from coordinator.errors import InvalidInput
from coordinator.resources import resource_dir

DEFAULT_PERSONAS = "implementer=3,reviewer=1"
PERSONAS_FIX = "write NAME=COUNT pairs separated by commas, e.g. --personas implementer=3,reviewer=1"


def known_personas() -> list[str]:
    return sorted(path.stem for path in resource_dir("personas").glob("*.md"))


def parse_personas(text: str, known: Collection[str]) -> dict[str, int]:
    """`implementer=3,reviewer=1` → {"implementer": 3, "reviewer": 1}; a clear error for anything else."""
    counts: dict[str, int] = {}
    for part in text.split(","):
        name, sep, number = (piece.strip() for piece in part.partition("="))
        if not name or not sep:
            raise InvalidInput("--personas", f"{part.strip()!r} is not NAME=COUNT", fix=PERSONAS_FIX)
        if name not in known:
            raise InvalidInput(
                "--personas", f"unknown persona {name!r}", fix=f"use one of: {', '.join(sorted(known))}"
            )
        if not number.isdigit():
            raise InvalidInput(
                "--personas", f"{part.strip()!r}: {number!r} is not a whole number", fix=PERSONAS_FIX
            )
        if name in counts:
            raise InvalidInput("--personas", f"{name!r} is listed twice", fix="list each persona once")
        counts[name] = int(number)
    if sum(counts.values()) == 0:
        raise InvalidInput("--personas", f"{text!r} asks for no agents at all", fix=PERSONAS_FIX)
    return counts


def slot_personas(counts: dict[str, int], limit: int) -> list[str]:
    """One persona per agent, taking the personas in turn, at most `limit` agents."""
    left = dict(counts)
    chosen: list[str] = []
    while len(chosen) < limit and any(left.values()):
        for name in counts:
            if left[name] and len(chosen) < limit:
                chosen.append(name)
                left[name] -= 1
    return chosen


def describe(personas: list[str]) -> str:
    return ",".join(f"{name}={n}" for name, n in Counter(personas).items())
