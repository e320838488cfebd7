"""How demanding a task is: four features of its text and shape, weighted into one 0 to 1 score.

The features (each 0 to 1) and their weights:

- reasoning depth (0.35): words that signal design or hard reasoning in the title, description
  and action (architecture, algorithm, concurrency, race, migrate, refactor, debug, …), each
  distinct word a quarter, less half a quarter per word that signals routine work (typo, rename,
  readme, bump, …);
- code complexity (0.25): half from the estimate (5 units or more is the most), half from the
  number of predicted files (6 or more is the most);
- domain specificity (0.20): the task's domain (security 0.9, database 0.7, deployment 0.6,
  api and frontend 0.4, testing 0.3, general 0.2, any other 0.3), or specialist words
  (oauth, sql, kubernetes, crypto, …) a third each, whichever is higher;
- context size (0.20): half from the length of the text (4000 characters or more is the most),
  half from the number of dependencies (4 or more is the most).

The score places a task in a band, and each band has a model tier: low → haiku (below
`cost.tier_sonnet_at`), medium → sonnet (below `cost.tier_opus_at`), high → opus.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from coordinator.config import CostConfig

Band = Literal["low", "medium", "high"]
Tier = Literal["haiku", "sonnet", "opus"]
BANDS: tuple[Band, ...] = ("low", "medium", "high")
TIERS: tuple[Tier, ...] = ("haiku", "sonnet", "opus")
"""The model tiers, cheapest first; the tier of a band has the band's index."""

WEIGHTS = {"reasoning_depth": 0.35, "code_complexity": 0.25, "domain_specificity": 0.20, "context_size": 0.20}
DOMAIN_SPECIFICITY = {
    "security": 0.9,
    "database": 0.7,
    "deployment": 0.6,
    "api": 0.4,
    "frontend": 0.4,
    "testing": 0.3,
    "general": 0.2,
}
OTHER_DOMAIN_SPECIFICITY = 0.3
DEFAULT_DOMAIN = "general"
"""The domain of a task that has none (the classifier's fallback)."""


_WORD = re.compile(r"[a-z][a-z-]*")
_REASONING = (
    "architect", "design", "algorithm", "concurren", "parallel", "race", "deadlock", "distributed",
    "consisten", "optimi", "performance", "refactor", "migrat", "debug", "investigat", "trade-off",
    "tradeoff", "scalab", "invariant", "transaction", "recurs", "security", "protocol", "rewrite",
)  # fmt: skip
_ROUTINE = (
    "typo", "rename", "readme", "docstring", "comment", "bump", "format", "lint", "wording", "spelling",
    "changelog",
)  # fmt: skip
_SPECIALIST = (
    "crypto", "encrypt", "oauth", "jwt", "saml", "auth", "permission", "sql", "index", "schema",
    "kubernetes", "docker", "terraform", "helm", "gpu", "cuda", "compiler", "parser", "grammar",
    "regex", "webhook", "payment", "billing", "websocket", "ffi",
)  # fmt: skip


@dataclass(frozen=True)
class TaskShape:
    """What the score reads of a task."""

    text: str
    estimate: float
    predicted_files: int
    dependencies: int
    domain: str | None


class Complexity(BaseModel):
    score: float
    band: Band
    features: dict[str, float]


def _distinct(stems: tuple[str, ...], words: frozenset[str]) -> int:
    """How many of the stems begin a word of the text."""
    return len({stem for word in words if word.startswith(stems) for stem in stems if word.startswith(stem)})


def _share(value: float, most: float) -> float:
    return max(0.0, min(1.0, value / most))


def features(shape: TaskShape) -> dict[str, float]:
    """The four features of a task, each 0 to 1."""
    return dict(zip(WEIGHTS, _features(shape), strict=True))


@functools.lru_cache(maxsize=4096)
def _features(shape: TaskShape) -> tuple[float, float, float, float]:
    """The features in `WEIGHTS` order; remembered, as the history scores the same finished tasks often."""
    text = shape.text
    words = frozenset(_WORD.findall(text.lower()))
    domain = shape.domain or DEFAULT_DOMAIN
    return (
        _share(_distinct(_REASONING, words) - 0.5 * _distinct(_ROUTINE, words), 4),
        0.5 * _share(shape.estimate, 5) + 0.5 * _share(shape.predicted_files, 6),
        max(
            DOMAIN_SPECIFICITY.get(domain, OTHER_DOMAIN_SPECIFICITY), _share(_distinct(_SPECIALIST, words), 3)
        ),
        0.5 * _share(len(text), 4000) + 0.5 * _share(shape.dependencies, 4),
    )


def band_of(score: float, cost: CostConfig) -> Band:
    if score >= cost.tier_opus_at:
        return "high"
    return "medium" if score >= cost.tier_sonnet_at else "low"


def score_of(shape: TaskShape) -> float:
    """The weighted score of a task, 0 to 1."""
    return round(
        sum(weight * value for weight, value in zip(WEIGHTS.values(), _features(shape), strict=True)), 4
    )


def score_task(shape: TaskShape, cost: CostConfig) -> Complexity:
    """The score of a task with its band and features."""
    score = score_of(shape)
    return Complexity(
        score=score, band=band_of(score, cost), features={k: round(v, 4) for k, v in features(shape).items()}
    )


def tier_of_band(band: Band) -> Tier:
    return TIERS[BANDS.index(band)]


def task_text(title: str, description: str, action: str) -> str:
    return "\n".join(part for part in (title, description, action) if part)
