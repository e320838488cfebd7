"""Which expertise domain a piece of work belongs to, from its words and the files it touches.

Each known domain has keyword and path rules with weights; words in a title count twice as much
as words in a description, and a matching file path counts three times. A domain configured
without rules of its own (e.g. `data-pipeline`) is matched by its own name, as a word or as a
folder. Only configured domains can win; with no match the answer is `general` (or, when
`general` is not configured, the last configured domain, the catch-all by convention).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

TITLE_WEIGHT = 2
DESCRIPTION_WEIGHT = 1
FILE_WEIGHT = 3
FALLBACK = "general"

_KEYWORDS: dict[str, tuple[str, ...]] = {
    "database": (
        r"schemas?",
        r"migrations?",
        r"sql",
        r"databases?",
        r"db",
        r"tables?",
        r"index(es)?",
        r"quer(y|ies)",
        r"postgres(ql)?",
        r"sqlite",
        r"mysql",
        r"orm",
        r"columns?",
        r"foreign keys?",
    ),
    "api": (
        r"apis?",
        r"endpoints?",
        r"rest(ful)?",
        r"routes?",
        r"graphql",
        r"http",
        r"webhooks?",
        r"openapi",
        r"status codes?",
    ),
    "frontend": (
        r"ui",
        r"frontend",
        r"front end",
        r"components?",
        r"pages?",
        r"css",
        r"styles?",
        r"styling",
        r"layouts?",
        r"react",
        r"vue",
        r"svelte",
        r"buttons?",
        r"html",
        r"tailwind",
        r"responsive",
    ),
    "testing": (
        r"tests?",
        r"testing",
        r"pytest",
        r"jest",
        r"coverage",
        r"e2e",
        r"fixtures?",
        r"assertions?",
    ),
    "security": (
        r"auth",
        r"authentication",
        r"authori[sz]ation",
        r"log ?in",
        r"tokens?",
        r"secrets?",
        r"passwords?",
        r"permissions?",
        r"oauth",
        r"jwt",
        r"csrf",
        r"xss",
        r"encrypt(ion)?",
        r"vulnerabilit(y|ies)",
        r"security",
    ),
    "deployment": (
        r"docker",
        r"dockerfile",
        r"deploy(s|ment|ing)?",
        r"ci",
        r"ci/cd",
        r"pipelines?",
        r"kubernetes",
        r"k8s",
        r"helm",
        r"terraform",
        r"releases?",
        r"github actions",
        r"nginx",
        r"infrastructure",
    ),
}

_PATHS: dict[str, tuple[str, ...]] = {
    "database": (
        r"(^|/)migrations?/",
        r"\.sql$",
        r"(^|/)schemas?/",
        r"(^|/)db/",
        r"(^|/)models?/",
        r"(^|/)alembic/",
    ),
    "api": (
        r"(^|/)api/",
        r"(^|/)routes?/",
        r"(^|/)endpoints?/",
        r"(^|/)controllers?/",
        r"(^|/)handlers?/",
        r"openapi",
    ),
    "frontend": (
        r"\.(tsx|jsx|css|scss|sass|less|vue|svelte|html)$",
        r"(^|/)components?/",
        r"(^|/)pages/",
        r"(^|/)frontend/",
        r"(^|/)styles?/",
        r"(^|/)public/",
    ),
    "testing": (
        r"(^|/)tests?/",
        r"(^|/)__tests__/",
        r"(^|/)test_[^/]*$",
        r"_test\.[a-z]+$",
        r"\.(test|spec)\.[a-z]+$",
        r"(^|/)conftest\.py$",
    ),
    "security": (r"(^|/)auth[^/]*/", r"(^|/)auth[^/]*\.[a-z]+$", r"(^|/)security/", r"(^|/)\.env"),
    "deployment": (
        r"(^|/)dockerfile$",
        r"docker-compose",
        r"(^|/)\.github/workflows/",
        r"(^|/)\.gitlab-ci\.yml$",
        r"(^|/)(deploy|k8s|helm|terraform|infra)/",
        r"(^|/)procfile$",
    ),
}


def _compile(patterns: Iterable[str], *, words: bool) -> tuple[re.Pattern[str], ...]:
    if words:
        return tuple(re.compile(rf"(?<![a-z0-9]){p}(?![a-z0-9])") for p in patterns)
    return tuple(re.compile(p) for p in patterns)


_KEYWORD_RULES = {domain: _compile(patterns, words=True) for domain, patterns in _KEYWORDS.items()}
_PATH_RULES = {domain: _compile(patterns, words=False) for domain, patterns in _PATHS.items()}


def _rules(domain: str) -> tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]:
    """Keyword and path rules of a domain; a domain without its own is matched by its name."""
    if domain in _KEYWORD_RULES:
        return _KEYWORD_RULES[domain], _PATH_RULES[domain]
    name = "[-_ ]".join(re.escape(part) for part in re.split(r"[-_]", domain.lower()))
    return _compile([name], words=True), _compile([rf"(^|/){name}(/|\.|$)"], words=False)


def _hits(rules: Sequence[re.Pattern[str]], text: str) -> int:
    return sum(len(rule.findall(text)) for rule in rules)


def domain_scores(
    title: str, description: str, files: Sequence[str], domains: Sequence[str]
) -> dict[str, int]:
    """The score of each configured domain (the fallback domain scores nothing on its own)."""
    title, description = title.lower(), description.lower()
    paths = [path.replace("\\", "/").lower() for path in files]
    scores: dict[str, int] = {}
    for domain in domains:
        if domain == FALLBACK:
            continue
        keywords, path_rules = _rules(domain)
        scores[domain] = (
            TITLE_WEIGHT * _hits(keywords, title)
            + DESCRIPTION_WEIGHT * _hits(keywords, description)
            + FILE_WEIGHT * sum(1 for path in paths if any(rule.search(path) for rule in path_rules))
        )
    return scores


def fallback_domain(domains: Sequence[str]) -> str:
    """Where unclassifiable work goes: `general`, or the last configured domain without it."""
    return FALLBACK if FALLBACK in domains else domains[-1]


def classify_domain(title: str, description: str, files: Sequence[str], domains: Sequence[str]) -> str:
    """The configured domain whose keywords and paths match best; ties go to the one listed first."""
    scores = domain_scores(title, description, files, domains)
    best = max(scores.values(), default=0)
    if best == 0:
        return fallback_domain(domains)
    return next(domain for domain in domains if scores.get(domain) == best)
