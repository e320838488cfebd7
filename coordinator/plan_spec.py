"""The plan file: epics, tasks, tests and their dependencies as JSON or YAML, checked before import.

Every problem is reported with where it is: line and column for syntax errors, a key path such as
`epics[2].tasks[0].depends_on[1]` for everything else; all problems of a file are reported at once.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import defaultdict
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from coordinator.errors import InvalidInput
from coordinator.graph import DependencyGraph, Edge, Kind, TaskNode

_T = TypeVar("_T")

# ---------------------------------------------------------------------- the format


def _dependency_ref(value: object) -> int | str:
    if isinstance(value, int | str) and not isinstance(value, bool):
        return value
    raise ValueError(f"expected a task key, a task title or an existing task id, got {value!r}")


DependencyRef = Annotated[int | str, PlainValidator(_dependency_ref)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TestSpec(_Spec):
    __test__: ClassVar[bool] = False  # not a pytest test class
    category: str = Field(min_length=1)
    description: str = Field(min_length=1)
    steps: list[str] = []


class TaskSpec(_Spec):
    key: str | None = Field(default=None, min_length=1)
    title: str = Field(min_length=1)
    description: str = ""
    action: str = ""
    priority: int = 0
    estimate: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    persona: str | None = None
    predicted_files: list[str] = []
    depends_on: list[DependencyRef] = []
    dependency_type: Kind = "hard"
    tests: list[TestSpec] = []


class EpicSpec(_Spec):
    key: str | None = Field(default=None, min_length=1)
    name: str = Field(min_length=1)
    description: str = ""
    priority: int = 0
    depends_on: list[str] = []
    tasks: list[TaskSpec] = []


class PlanSpec(_Spec):
    project: str | None = None
    epics: list[EpicSpec] = Field(min_length=1)


_FIELDS_UNDER: dict[str, type[_Spec]] = {"tests": TestSpec, "tasks": TaskSpec, "epics": EpicSpec}

# ---------------------------------------------------------------------- the result


class TaskRef(BaseModel):
    """A task of the plan by position: `spec.epics[epic].tasks[task]`."""

    model_config = ConfigDict(frozen=True)
    epic: int
    task: int

    @property
    def path(self) -> str:
        return f"epics[{self.epic}].tasks[{self.task}]"


class PlanEdge(BaseModel):
    """`after` depends on `before`: a task of this plan, or (an int) the id of an existing task."""

    before: TaskRef | int
    after: TaskRef
    kind: Kind
    location: str


class EpicEdge(BaseModel):
    """Epic `after` depends on epic `before` (positions in `spec.epics`)."""

    before: int
    after: int
    location: str


class ParsedPlan(BaseModel):
    spec: PlanSpec
    edges: list[PlanEdge]
    epic_edges: list[EpicEdge]

    @property
    def external_refs(self) -> list[int]:
        """Ids of existing tasks the plan depends on; the caller checks that they exist."""
        return sorted({edge.before for edge in self.edges if isinstance(edge.before, int)})


class SuggestedEdge(BaseModel):
    """A dependency read from a description; only a suggestion, never applied."""

    before: TaskRef
    after: TaskRef
    phrase: str
    inferred: Literal[True] = True


class PlanProblem(BaseModel):
    location: str
    problem: str
    fix: str | None = None


class PlanSpecError(InvalidInput):
    """A plan file with one or more problems; `problems` lists them all."""

    def __init__(self, problems: list[PlanProblem]) -> None:
        self.problems = problems
        first, rest = problems[0], problems[1:]
        more = "".join(f"; {p.location}: {p.problem}" for p in rest)
        super().__init__(first.location, first.problem + more, fix=first.fix)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "problems": [p.model_dump() for p in self.problems]}


# ---------------------------------------------------------------------- parsing


def parse_plan(text: str, *, format: Literal["json", "yaml"] | None = None) -> ParsedPlan:
    """Read, check and resolve a plan file; raises PlanSpecError naming every problem."""
    return resolve(validate_shape(load_document(text, format=format)))


def load_document(text: str, *, format: Literal["json", "yaml"] | None = None) -> Any:
    """The JSON or YAML document (JSON when the text starts with `{` or `[` and no format is given)."""
    if format is None:
        format = "json" if text.lstrip().startswith(("{", "[")) else "yaml"
    try:
        return json.loads(text) if format == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise _syntax_error("JSON", err.lineno, err.colno, err.msg) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise _syntax_error("YAML", line, column, err.problem or str(err)) from None
    except yaml.YAMLError as err:
        raise _syntax_error("YAML", 1, 1, str(err)) from None


def validate_shape(document: Any) -> PlanSpec:
    """The document as a PlanSpec; every shape problem is named by its key path."""
    if not isinstance(document, dict):
        raise PlanSpecError(
            [
                PlanProblem(
                    location="(top level)",
                    problem=f"the plan must be a mapping with an epics list, not {type(document).__name__}",
                    fix='start the file with `epics:` (YAML) or `{"epics": [...]}` (JSON)',
                )
            ]
        )
    try:
        return PlanSpec.model_validate(document)
    except ValidationError as err:
        raise PlanSpecError([_shape_problem(error) for error in err.errors()]) from None


def resolve(spec: PlanSpec) -> ParsedPlan:
    """Resolve every `depends_on` and check keys and cycles; raises PlanSpecError."""
    index = _Index(spec)
    problems = list(index.problems)
    edges: list[PlanEdge] = []
    epic_edges: list[EpicEdge] = []
    for e, epic in enumerate(spec.epics):
        seen_epics: set[int] = set()
        for k, name in enumerate(epic.depends_on):
            location = f"epics[{e}].depends_on[{k}]"
            found = _usable(index.epic(name, location), e, seen_epics, f"epic {name!r}", location)
            if isinstance(found, PlanProblem):
                problems.append(found)
            else:
                epic_edges.append(EpicEdge(before=found, after=e, location=location))
        for t, task in enumerate(epic.tasks):
            after = TaskRef(epic=e, task=t)
            seen: set[TaskRef | int] = set()
            for k, ref in enumerate(task.depends_on):
                location = f"{after.path}.depends_on[{k}]"
                before: TaskRef | int | PlanProblem = _usable(
                    index.task(ref, location), after, seen, f"task {ref!r}", location
                )
                if isinstance(before, PlanProblem):
                    problems.append(before)
                else:
                    edges.append(
                        PlanEdge(before=before, after=after, kind=task.dependency_type, location=location)
                    )
    problems += _cycles(spec, index, edges, epic_edges)
    if problems:
        raise PlanSpecError(problems)
    return ParsedPlan(spec=spec, edges=edges, epic_edges=epic_edges)


# ---------------------------------------------------------------------- inference

_PHRASE = re.compile(
    r"\b(?:after|once|when|requires?|required|needs?|depends? on|blocked by|builds? on)\s+"
    r"(?:the\s+|a\s+|an\s+)?(?P<ref>[^.,;:()\n]{2,80}?)"
    r"(?=\s+(?:task|step|epic|is|are|has|have|was|were|exists?|lands?|work)\b|[.,;:()\n]|$)",
    re.IGNORECASE,
)
_STOPWORDS = frozenset({"the", "a", "an", "and", "of", "to", "for", "in", "on", "with", "task", "all", "its"})


def infer_dependencies(spec: PlanSpec) -> list[SuggestedEdge]:
    """Dependencies hinted at in descriptions ("after the schema task", "requires the API",
    "depends on X", "once X is done") that match another task's key or title.

    Suggestions that are already dependencies or would close a cycle are left out; a plan with
    problems raises PlanSpecError as `resolve` does.
    """
    plan = resolve(spec)
    index = _Index(spec)
    graph = DependencyGraph()
    for e in range(len(spec.epics)):
        graph.add_epic(e)
    for ref, number in index.number.items():
        graph.add_task(number, epic=ref.epic)
    for epic_edge in plan.epic_edges:
        graph.add_epic_edge(epic_edge.before, epic_edge.after)
    for edge in plan.edges:
        if isinstance(edge.before, TaskRef):
            graph.add_edge(index.number[edge.before], index.number[edge.after], edge.kind)
    suggestions: list[SuggestedEdge] = []
    for after, task in index.tasks():
        for match in _PHRASE.finditer(f"{task.description}\n{task.action}"):
            for before in index.matching(match.group("ref"), exclude=after):
                try:
                    graph.add_edge(index.number[before], index.number[after])
                except InvalidInput:  # already a dependency, or it would close a cycle
                    continue
                suggestions.append(SuggestedEdge(before=before, after=after, phrase=match.group(0).strip()))
    return suggestions


# ---------------------------------------------------------------------- internals


class _Index:
    """Tasks and epics of a spec by key and title, with problems of duplicate keys."""

    def __init__(self, spec: PlanSpec) -> None:
        self.spec = spec
        self.keys: dict[str, TaskRef] = {}
        self.titles: dict[str, list[TaskRef]] = defaultdict(list)
        self.epic_keys: dict[str, int] = {}
        self.epic_names: dict[str, list[int]] = defaultdict(list)
        self.number: dict[TaskRef, int] = {}
        self.problems: list[PlanProblem] = []
        first_at: dict[tuple[str, str], str] = {}
        for e, epic in enumerate(spec.epics):
            if epic.key is not None and self._first(first_at, "epic", epic.key, f"epics[{e}].key"):
                self.epic_keys[epic.key] = e
            self.epic_names[epic.name].append(e)
            for t, task in enumerate(epic.tasks):
                ref = TaskRef(epic=e, task=t)
                self.number[ref] = len(self.number)
                if task.key is not None and self._first(first_at, "task", task.key, f"{ref.path}.key"):
                    self.keys[task.key] = ref
                self.titles[task.title].append(ref)

    def _first(self, first_at: dict[tuple[str, str], str], what: str, key: str, location: str) -> bool:
        """True the first time an epic (or task) key is seen; a duplicate-key problem after that."""
        first = first_at.setdefault((what, key), location)
        if first != location:
            self.problems.append(
                PlanProblem(
                    location=location,
                    problem=f"duplicate key {key!r} (first used at {first})",
                    fix="give every epic and every task a key of its own",
                )
            )
        return first == location

    def tasks(self) -> list[tuple[TaskRef, TaskSpec]]:
        return [(ref, self.spec.epics[ref.epic].tasks[ref.task]) for ref in self.number]

    def task(self, ref: int | str, location: str) -> TaskRef | int | PlanProblem:
        if isinstance(ref, int):
            return ref
        if ref in self.keys:
            return self.keys[ref]
        return _one_of(self.titles.get(ref, []), ref, "task", location, [*self.keys, *self.titles])

    def epic(self, ref: str, location: str) -> int | PlanProblem:
        if ref in self.epic_keys:
            return self.epic_keys[ref]
        return _one_of(
            self.epic_names.get(ref, []), ref, "epic", location, [*self.epic_keys, *self.epic_names]
        )

    def matching(self, phrase: str, *, exclude: TaskRef) -> list[TaskRef]:
        """Tasks whose key is a word of the phrase, else whose title holds all of its words."""
        words = _words(phrase)
        by_key = [ref for key, ref in self.keys.items() if key.lower() in words and ref != exclude]
        if by_key or not words:
            return by_key
        return [
            ref
            for ref, task in self.tasks()
            if ref != exclude and words <= _words(task.title) | _words(task.key or "")
        ]


def _usable(
    found: _T | PlanProblem, own: object, seen: set[Any], name: str, location: str
) -> _T | PlanProblem:
    """The resolved reference, unless it names its owner or was listed before."""
    if isinstance(found, PlanProblem):
        return found
    if found == own:
        return PlanProblem(location=location, problem=f"{name} cannot depend on itself")
    if found in seen:
        return PlanProblem(location=location, problem=f"{name} is listed twice")
    seen.add(found)
    return found


def _one_of(found: list[_T], ref: str, what: str, location: str, names: list[str]) -> _T | PlanProblem:
    """The single task (or epic) a title (or name) matched, or a problem: ambiguous, or unknown
    with the closest keys and titles as suggestions."""
    label = "title" if what == "task" else "name"
    if len(found) == 1:
        return found[0]
    if found:
        return PlanProblem(
            location=location,
            problem=f"{ref!r} is the {label} of {len(found)} {what}s",
            fix=f"give the {what} you mean a `key` and refer to that",
        )
    by_lower = {name.lower(): name for name in names}
    close = [by_lower[c] for c in difflib.get_close_matches(ref.lower(), list(by_lower), n=3, cutoff=0.6)]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return PlanProblem(
        location=location,
        problem=f"no {what} in this plan has the key or {label} {ref!r}{hint}",
        fix=f"refer to a {what} of this plan by its key or exact {label}"
        + (", or to an existing task by its numeric id" if what == "task" else ""),
    )


def _cycles(
    spec: PlanSpec, index: _Index, edges: list[PlanEdge], epic_edges: list[EpicEdge]
) -> list[PlanProblem]:
    """One problem per dependency that closes a cycle, naming the cycle by keys or titles."""
    local = {
        (index.number[e.before], index.number[e.after]): e for e in edges if isinstance(e.before, TaskRef)
    }
    by_epics = {(e.before, e.after): e for e in epic_edges}
    report = DependencyGraph.validate(
        [TaskNode(number, epic=ref.epic) for ref, number in index.number.items()],
        [Edge(before, after, edge.kind) for (before, after), edge in local.items()],
        epics=range(len(spec.epics)),
        epic_edges=[Edge(before, after) for before, after in by_epics],
    )
    task_names = {
        number: _task_name(spec.epics[ref.epic].tasks[ref.task]) for ref, number in index.number.items()
    }
    epic_names = {e: repr(epic.key or epic.name) for e, epic in enumerate(spec.epics)}
    problems = []
    for issue in report.issues:
        declared = (by_epics if issue.epic_edge else local)[issue.edge.before, issue.edge.after]
        names = epic_names if issue.field == "epic_depends_on" else task_names
        problems.append(
            PlanProblem(
                location=declared.location,
                problem=f"this dependency closes the cycle {' -> '.join(names[n] for n in issue.cycle)}",
                fix="remove one dependency of the cycle",
            )
        )
    return problems


def _task_name(task: TaskSpec) -> str:
    return repr(task.key or task.title)


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOPWORDS}


def _shape_problem(error: Any) -> PlanProblem:
    loc = tuple(error["loc"])
    location = _path(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        model: type[_Spec] = next(
            (_FIELDS_UNDER[p] for p in reversed(loc[:-1]) if p in _FIELDS_UNDER), PlanSpec
        )
        close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=2, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return PlanProblem(
            location=location,
            problem=f"unknown field {loc[-1]!r}{hint}",
            fix=f"use only the fields {', '.join(model.model_fields)}",
        )
    if error["type"] == "missing":
        return PlanProblem(location=location, problem="this field is required", fix="add it")
    if error["type"] == "value_error":
        return PlanProblem(location=location, problem=str(error["msg"]).removeprefix("Value error, "))
    given = repr(error.get("input"))
    given = given if len(given) <= 40 else given[:37] + "..."
    return PlanProblem(location=location, problem=f"{error['msg']} (got {given})")


def _path(loc: tuple[Any, ...]) -> str:
    """('epics', 2, 'tasks', 0) -> 'epics[2].tasks[0]'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _syntax_error(language: str, line: int, column: int, message: str) -> PlanSpecError:
    return PlanSpecError(
        [
            PlanProblem(
                location=f"line {line}, column {column}",
                problem=f"invalid {language}: {message}",
                fix=f"correct the {language} syntax at line {line}",
            )
        ]
    )
