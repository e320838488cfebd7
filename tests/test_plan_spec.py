"""The plan file parser: the format, reference resolution, and an error for every kind of bad input."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from coordinator.errors import InvalidInput
from coordinator.plan_spec import (
    EpicEdge,
    PlanSpecError,
    TaskRef,
    infer_dependencies,
    parse_plan,
    resolve,
    validate_shape,
)

PLAN = textwrap.dedent(
    """\
    project: shop
    epics:
      - key: db
        name: Database
        description: Everything lives under core/.
        tasks:
          - key: schema
            title: Create the database schema
            description: Write schema/001.sql.
            estimate: 2
            predicted_files: [schema/001.sql]
            tests:
              - category: functional
                description: tables exist
                steps: [migrate, inspect]
          - title: Seed data
            depends_on: [schema, 42]
            dependency_type: soft
      - name: API
        depends_on: [db]
        tasks:
          - key: users
            title: Users endpoint
            persona: implementer
            depends_on: [Seed data]
    """
)


def problems_of(text: str) -> list[tuple[str, str]]:
    with pytest.raises(PlanSpecError) as caught:
        parse_plan(text)
    return [(p.location, p.problem) for p in caught.value.problems]


# ---------------------------------------------------------------------- good plans


def test_a_yaml_plan_is_parsed_and_its_references_resolved() -> None:
    plan = parse_plan(PLAN)
    assert plan.spec.project == "shop"
    schema = plan.spec.epics[0].tasks[0]
    assert (schema.key, schema.estimate, schema.tests[0].steps) == ("schema", 2.0, ["migrate", "inspect"])
    assert [(e.before, e.after, e.kind, e.location) for e in plan.edges] == [
        (TaskRef(epic=0, task=0), TaskRef(epic=0, task=1), "soft", "epics[0].tasks[1].depends_on[0]"),
        (42, TaskRef(epic=0, task=1), "soft", "epics[0].tasks[1].depends_on[1]"),
        (TaskRef(epic=0, task=1), TaskRef(epic=1, task=0), "hard", "epics[1].tasks[0].depends_on[0]"),
    ]
    assert plan.epic_edges == [EpicEdge(before=0, after=1, location="epics[1].depends_on[0]")]
    assert plan.external_refs == [42]
    assert TaskRef(epic=1, task=0).path == "epics[1].tasks[0]"


def test_the_same_plan_as_json_gives_the_same_result() -> None:
    as_json = json.dumps(yaml.safe_load(PLAN), indent=2)
    assert parse_plan(as_json) == parse_plan(PLAN)
    assert parse_plan(as_json, format="json") == parse_plan(PLAN, format="yaml")


def test_a_plan_built_in_code_is_resolved_the_same_way() -> None:
    spec = validate_shape(
        {"epics": [{"name": "E", "tasks": [{"title": "a"}, {"title": "b", "depends_on": ["a"]}]}]}
    )
    assert [(e.before, e.after) for e in resolve(spec).edges] == [
        (TaskRef(epic=0, task=0), TaskRef(epic=0, task=1))
    ]


# ---------------------------------------------------------------------- syntax errors


def test_invalid_json_names_line_and_column() -> None:
    text = '{\n  "epics": [\n    {"name": "x",, "tasks": []}\n  ]\n}'
    [(location, problem)] = problems_of(text)
    assert location == "line 3, column 18"
    assert problem.startswith("invalid JSON: Expecting property name")


def test_invalid_yaml_names_the_line() -> None:
    text = "epics:\n  - name: x\n    tasks: [\n  - title: y\n"
    [(location, problem)] = problems_of(text)
    assert location.startswith("line 4,")
    assert problem.startswith("invalid YAML")


def test_a_syntax_error_is_an_invalid_input_with_a_fix() -> None:
    with pytest.raises(PlanSpecError) as caught:
        parse_plan("{")
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.field == "line 1, column 2"
    assert caught.value.fix == "correct the JSON syntax at line 1"
    [problem] = caught.value.problems
    assert problem.problem.startswith("invalid JSON: Expecting property name")
    assert caught.value.to_dict()["problems"] == [problem.model_dump()]


# ---------------------------------------------------------------------- shape errors


def test_shape_errors_name_the_key_path_all_at_once() -> None:
    text = textwrap.dedent(
        """\
        epics:
          - name: A
            tasks:
              - title: a
          - name: B
          - name: C
            tasks:
              - title: c
                estimate: -1
                depends_on: [a, [1], true]
                estimat: 3
                dependency_type: maybe
              - description: no title
        """
    )
    problems = dict(problems_of(text))
    assert problems["epics[2].tasks[0].estimate"] == "Input should be greater than 0 (got -1)"
    assert problems["epics[2].tasks[0].depends_on[1]"].startswith(
        "expected a task key, a task title or an existing"
    )
    assert "epics[2].tasks[0].depends_on[2]" in problems
    assert problems["epics[2].tasks[0].estimat"] == "unknown field 'estimat'; did you mean 'estimate'?"
    assert problems["epics[2].tasks[0].dependency_type"].startswith("Input should be 'hard' or 'soft'")
    assert problems["epics[2].tasks[1].title"] == "this field is required"


def test_a_plan_must_be_a_mapping_with_epics() -> None:
    assert problems_of("[1, 2]") == [
        ("(top level)", "the plan must be a mapping with an epics list, not list"),
    ]
    assert problems_of("project: x\n") == [("epics", "this field is required")]
    assert problems_of("epics: []\n")[0][0] == "epics"


# ---------------------------------------------------------------------- reference errors


def test_an_unknown_reference_names_the_key_and_suggests_close_matches() -> None:
    text = PLAN.replace("depends_on: [Seed data]", "depends_on: [shema]")
    [(location, problem)] = problems_of(text)
    assert location == "epics[1].tasks[0].depends_on[0]"
    assert problem == "no task in this plan has the key or title 'shema'; did you mean 'schema'?"


def test_suggestions_ignore_case() -> None:
    [(_, problem)] = problems_of(PLAN.replace("depends_on: [Seed data]", "depends_on: [SCHEMA]"))
    assert problem == "no task in this plan has the key or title 'SCHEMA'; did you mean 'schema'?"


def test_an_ambiguous_epic_name_asks_for_a_key() -> None:
    text = "epics:\n  - {name: A}\n  - {name: A}\n  - {name: B, depends_on: [A]}\n"
    assert problems_of(text) == [("epics[2].depends_on[0]", "'A' is the name of 2 epics")]


def test_an_unknown_epic_reference_suggests_close_matches() -> None:
    [(location, problem)] = problems_of(PLAN.replace("depends_on: [db]", "depends_on: [Databse]"))
    assert location == "epics[1].depends_on[0]"
    assert problem == "no epic in this plan has the key or name 'Databse'; did you mean 'Database'?"


def test_duplicate_keys_are_errors() -> None:
    text = PLAN.replace("key: users", "key: schema").replace("- name: API", "- name: API\n    key: db")
    assert problems_of(text) == [
        ("epics[1].key", "duplicate key 'db' (first used at epics[0].key)"),
        ("epics[1].tasks[0].key", "duplicate key 'schema' (first used at epics[0].tasks[0].key)"),
    ]


def test_an_ambiguous_title_asks_for_a_key() -> None:
    text = PLAN.replace("title: Users endpoint", "title: Seed data")
    with pytest.raises(PlanSpecError) as caught:
        parse_plan(text)
    [problem] = caught.value.problems
    assert (problem.location, problem.problem) == (
        "epics[1].tasks[0].depends_on[0]",
        "'Seed data' is the title of 2 tasks",
    )
    assert problem.fix == "give the task you mean a `key` and refer to that"


def test_self_and_repeated_references_are_errors() -> None:
    text = textwrap.dedent(
        """\
        epics:
          - key: e
            name: E
            depends_on: [e]
            tasks:
              - {key: a, title: A}
              - {key: b, title: B, depends_on: [b, a, A]}
        """
    )
    assert problems_of(text) == [
        ("epics[0].depends_on[0]", "epic 'e' cannot depend on itself"),
        ("epics[0].tasks[1].depends_on[0]", "task 'b' cannot depend on itself"),
        ("epics[0].tasks[1].depends_on[2]", "task 'A' is listed twice"),
    ]


def test_a_cycle_in_the_import_is_named_where_it_closes() -> None:
    text = textwrap.dedent(
        """\
        epics:
          - name: Core
            tasks:
              - {key: schema, title: Schema, depends_on: [api]}
              - {key: models, title: Models, depends_on: [schema]}
              - {key: api, title: API, depends_on: [models]}
        """
    )
    assert problems_of(text) == [
        (
            "epics[0].tasks[2].depends_on[0]",
            "this dependency closes the cycle 'api' -> 'schema' -> 'models' -> 'api'",
        )
    ]


def test_an_epic_cycle_is_named_by_epics() -> None:
    text = textwrap.dedent(
        """\
        epics:
          - {key: a, name: A, depends_on: [C]}
          - {key: b, name: B, depends_on: [a]}
          - {name: C, depends_on: [b], tasks: [{title: t}]}
        """
    )
    assert problems_of(text) == [
        ("epics[2].depends_on[0]", "this dependency closes the cycle 'C' -> 'a' -> 'b' -> 'C'")
    ]


# ---------------------------------------------------------------------- inferred dependencies


INFER = textwrap.dedent(
    """\
    epics:
      - name: App
        tasks:
          - key: schema
            title: Create the database schema
          - key: api
            title: Build the REST API
            description: Requires the schema. Depends on the logging setup.
          - key: ui
            title: Web pages
            description: Start after the schema task; once the REST API is done, wire the forms.
          - key: docs
            title: Write docs
            description: Needs the web pages and depends on docs itself.
            depends_on: [ui]
    """
)


def test_dependencies_are_inferred_from_phrases_as_suggestions_only() -> None:
    plan = parse_plan(INFER)
    suggestions = infer_dependencies(plan.spec)
    assert [(s.before.task, s.after.task, s.phrase) for s in suggestions] == [
        (0, 1, "Requires the schema"),
        (0, 2, "after the schema"),
        (1, 2, "once the REST API"),
    ]
    assert all(s.inferred for s in suggestions)
    assert plan == parse_plan(INFER)  # nothing was applied


def test_inference_skips_suggestions_that_would_close_a_cycle() -> None:
    text = INFER.replace(
        "title: Create the database schema", "title: Create the database schema\n        depends_on: [api]"
    )
    suggestions = infer_dependencies(parse_plan(text).spec)
    assert (0, 1) not in [(s.before.task, s.after.task) for s in suggestions]


def test_the_example_in_the_planning_guide_parses() -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "planning.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", guide, re.DOTALL)
    assert example is not None
    plan = parse_plan(example.group(1))
    assert [epic.key for epic in plan.spec.epics] == ["db", "api", "ui"]
    assert len(plan.edges) == 3 and len(plan.epic_edges) == 1
