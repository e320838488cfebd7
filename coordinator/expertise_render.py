"""`expertise.yaml`: rendering a domain's expertise, the line cap, and reading hand edits back.

The file holds a header comment, the domain's figures (domain, description, confidence,
usage_count, version, last_updated) and one list per kind of learning:

| kind      | key                     | item                  |
|-----------|-------------------------|-----------------------|
| core_file | `core_files`            | a path                |
| pattern   | `patterns`              | a sentence            |
| technique | `best_practices`        | a sentence            |
| failure   | `learned_from_failures` | `{issue, solution}`   |
| gotcha    | `gotchas`               | a sentence            |
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from coordinator.errors import InvalidInput
from coordinator.expertise_model import (
    Diff,
    Entry,
    Expertise,
    HandEntry,
    Kind,
    check_path,
    check_text,
    remove,
)

SECTIONS: dict[Kind, str] = {
    "core_file": "core_files",
    "pattern": "patterns",
    "technique": "best_practices",
    "failure": "learned_from_failures",
    "gotcha": "gotchas",
}
KIND_OF_SECTION = {section: kind for kind, section in SECTIONS.items()}
DERIVED_KEYS = ("confidence", "usage_count", "version", "last_updated")
MAX_DESCRIPTION_LINES = 10
# What the cap prunes first: the oldest failures, then the least used patterns, then the rest.
PRUNE_ORDER: tuple[Kind, ...] = ("failure", "pattern", "technique", "gotcha", "core_file")
HEADER = """\
# Expertise of the {domain} domain: a working memory file, not a source of truth.
# YokeFlow keeps it from what agents learn (record_learning, failures and their fixes, the files
# they touch) and rewrites it after each change. Check it against the code before relying on it.
# Edits by hand are welcome: they are imported as a new version before the file is next written,
# at start, and on improve. Keep the keys below; at most {max_lines} lines.
"""


@dataclass(frozen=True)
class Figures:
    """The numbers shown at the top of the file (none of them affects the line count)."""

    confidence: float = 0.0
    usage_count: int = 0
    version: int = 0
    updated_at: float = 0.0


# libyaml's emitter is about twenty times faster, which matters near the cap: every change renders
# the file once, inside its transaction.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(data: object) -> str:
    return yaml.dump(
        data, Dumper=_DUMPER, sort_keys=False, allow_unicode=True, width=1_000_000, default_flow_style=False
    )


def _item(entry: Entry) -> object:
    return {"issue": entry.content, "solution": entry.fix} if entry.kind == "failure" else entry.content


def shown_description(domain: str, expertise: Expertise) -> str:
    """The description the file shows: the stored one, or a default naming the domain."""
    return expertise.description or f"What agents learned about {domain} work in this project."


def render_yaml(domain: str, expertise: Expertise, figures: Figures, max_lines: int) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(figures.updated_at))
    head = {
        "domain": domain,
        "description": shown_description(domain, expertise),
        "confidence": figures.confidence,
        "usage_count": figures.usage_count,
        "version": figures.version,
        "last_updated": stamp,
    }
    body = {section: [_item(e) for e in expertise.of_kind(kind)] for kind, section in SECTIONS.items()}
    return HEADER.format(domain=domain, max_lines=max_lines) + _dump(head) + _dump(body)


def count_lines(text: str) -> int:
    return len(text.splitlines())


def fit_to_cap(domain: str, expertise: Expertise, max_lines: int) -> tuple[Expertise, Diff, int]:
    """Prune until the rendered file has at most `max_lines` lines: the oldest failures first,
    then the least used (then least recently seen) patterns, then techniques, gotchas, core files.
    The pruned expertise, what was pruned, and its line count (the figures do not change it)."""
    excess = count_lines(render_yaml(domain, expertise, Figures(), max_lines)) - max_lines
    diff = Diff()
    while excess > 0 and expertise.entries:
        candidates = sorted(
            expertise.entries,
            key=lambda e: (
                PRUNE_ORDER.index(e.kind),
                e.last_seen if e.kind == "failure" else e.count,
                e.last_seen,
            ),
        )
        doomed, freed = [], 0
        for entry in candidates:
            if freed >= excess:
                break
            doomed.append(entry)
            freed += count_lines(_dump([_item(entry)]))
        expertise, removed = remove(expertise, doomed, f"line cap of {max_lines}")
        diff.extend(removed)
        excess = count_lines(render_yaml(domain, expertise, Figures(), max_lines)) - max_lines
    return expertise, diff, excess + max_lines


# --------------------------------------------------------------------------------- reading back


@dataclass(frozen=True)
class ParsedFile:
    description: str | None
    entries: list[HandEntry]


class _Reader:
    """Walks the YAML node tree, so every problem names its line."""

    def __init__(self, path: str, loader: yaml.SafeLoader) -> None:
        self.path, self.loader = path, loader

    def problem(self, node: Node, what: str, fix: str) -> InvalidInput:
        return InvalidInput(f"{self.path}, line {node.start_mark.line + 1}", what, fix=fix)

    def text(self, node: Node, what: str) -> str:
        value: Any = self.loader.construct_object(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, str | int | float) or isinstance(value, bool) or not str(value).strip():
            raise self.problem(node, f"{what} must be a non-empty text", fix="write it as one line of text")
        try:
            return check_text(str(value), what)
        except InvalidInput as exc:
            raise self.problem(node, exc.message, fix=exc.fix or "shorten it") from None

    def items(self, node: Node, section: str) -> list[Node]:
        if isinstance(node, ScalarNode) and self.loader.construct_object(node) is None:
            return []
        if not isinstance(node, SequenceNode):
            raise self.problem(
                node, f"{section} must be a list", fix=f"write each item of {section} as `- item`"
            )
        return list(node.value)

    def entry(self, kind: Kind, node: Node, where: str) -> HandEntry:
        if kind != "failure":
            content = self.text(node, where)
            if kind == "core_file":
                try:
                    content = check_path(content, where)
                except InvalidInput as exc:
                    raise self.problem(node, exc.message, fix=exc.fix or "") from None
            return HandEntry(kind, content, None)
        if not isinstance(node, MappingNode):
            raise self.problem(
                node,
                f"{where} must be a mapping with issue and solution",
                fix="write `- issue: …` and `  solution: …`",
            )
        fields = {str(key.value): value for key, value in node.value}
        unknown = sorted(set(fields) - {"issue", "solution"})
        if unknown or "issue" not in fields:
            raise self.problem(
                node,
                f"{where} has {'unknown keys ' + ', '.join(unknown) if unknown else 'no issue'}",
                fix="give each failure an issue and a solution (null while none is known)",
            )
        solution = fields.get("solution")
        fix = None
        if solution is not None and self.loader.construct_object(solution) is not None:
            fix = self.text(solution, f"{where}.solution")
        return HandEntry("failure", self.text(fields["issue"], f"{where}.issue"), fix)


def parse_yaml(text: str, path: str, domain: str) -> ParsedFile:
    """The learnings of a hand-edited expertise.yaml; any problem is an error naming its line."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(
            f"{path}{line}",
            f"is not valid YAML: {problem}",
            fix="correct the YAML there (indent with spaces; quote text containing ': ' or ' #'); "
            "nothing was imported",
        ) from None
    finally:
        loader.dispose()
    reader = _Reader(path, loader)
    if root is None:
        return ParsedFile(None, [])
    if not isinstance(root, MappingNode):
        raise reader.problem(
            root, "must be a mapping of keys", fix="start the file with `domain: " + domain + "`"
        )
    known = ("domain", "description", *DERIVED_KEYS, *KIND_OF_SECTION)
    description, entries = None, []
    for key_node, value in root.value:
        key = str(key_node.value)
        if key not in known:
            raise reader.problem(
                key_node, f"unknown key {key!r}", fix=f"use only {', '.join(known)} (nothing was imported)"
            )
        if key == "domain" and reader.text(value, "domain") != domain:
            raise reader.problem(
                value,
                f"names domain {loader.construct_object(value)!r} but the file belongs to {domain!r}",
                fix=f"write `domain: {domain}`, or move the file to the folder of its domain",
            )
        if key == "description":
            description = reader.text(value, "description")
            if count_lines(description) > MAX_DESCRIPTION_LINES:
                raise reader.problem(
                    value, f"description has more than {MAX_DESCRIPTION_LINES} lines", fix="shorten it"
                )
        if key in KIND_OF_SECTION:
            kind = KIND_OF_SECTION[key]
            entries += [
                reader.entry(kind, item, f"{key}[{i}]") for i, item in enumerate(reader.items(value, key))
            ]
    return ParsedFile(description, entries)
