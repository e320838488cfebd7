"""Random and malformed arguments to every tool: only valid results or explained errors, never a crash."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.types import Tool

from coordinator.config import Config
from coordinator.service import Coordinator
from launcher.serve import with_project
from tests.conftest import Database, ManualClock
from tests.test_mcp_support import connect, make_project, ok, text_of
from tools.server import profile_tools

TOOL_NAMES = [spec.name for spec in profile_tools("all")]
EXAMPLES = int(os.environ.get("YOKEFLOW_FUZZ_EXAMPLES", "120"))  # raise it for a longer hunt

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-2, max_value=8),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "shop", "pending", "done", "hard", "soft", "implementer", "a", "1", "\x00", "k0"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
task_like = st.fixed_dictionaries(
    {},
    optional={
        "key": st.sampled_from(["k0", "k1", "k2", "new"]) | json_values,
        "title": st.text(max_size=20) | json_values,
        "description": st.text(max_size=20),
        "action": st.text(max_size=20),
        "depends_on": st.lists(
            st.integers(min_value=-1, max_value=8) | st.sampled_from(["k0", "k1", "x"]), max_size=3
        ),
        "persona": st.sampled_from(["implementer", "nobody"]),
        "priority": st.integers(min_value=-5, max_value=5) | json_values,
    },
)


def _from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that mostly fit `schema` (small ids that exist, known words), so calls reach the coordinator."""
    if "$ref" in schema:
        return task_like if schema["$ref"].endswith("/TaskInput") else json_values
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of(*(_from_schema(option) for option in schema["anyOf"]))
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(min_value=0, max_value=6)
    if kind == "number":
        return st.floats(min_value=0, max_value=120, allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string":
        return st.sampled_from(["shop", "k0", "k1", "implementer", "worker", "x-a1", "", "E"]) | st.text(
            max_size=12
        )
    if kind == "array" and "prefixItems" in schema:  # a tuple, e.g. an update_execution_plan pair
        return st.tuples(*(_from_schema(item) for item in schema["prefixItems"])).map(list)
    if kind == "array":
        return st.lists(_from_schema(schema.get("items", {})), max_size=3)
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):  # keyed by task id
        keys = st.sampled_from(["1", "2", "3", "0", "k0"])
        return st.dictionaries(keys, _from_schema(schema["additionalProperties"]), max_size=3)
    return json_values


def _arguments(tool: Tool) -> st.SearchStrategy[dict[str, Any]]:
    """Half the time arguments that fit the schema (to reach the coordinator), half the time anything."""
    schema = tool.input_schema
    required = set(schema.get("required", []))
    fitting = {name: _from_schema(prop) for name, prop in schema.get("properties", {}).items()}
    anything = {name: value | json_values for name, value in fitting.items()}

    def shaped(values: dict[str, st.SearchStrategy[Any]], extra: int) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {name: value for name, value in values.items() if name in required},
            optional={name: value for name, value in values.items() if name not in required},
        ).flatmap(
            lambda known: st.dictionaries(st.text(max_size=8), json_values, max_size=extra).map(
                lambda unknown: {**unknown, **known}
            )
        )

    return st.one_of(shaped(fitting, 0), shaped(anything, 2))


@pytest.fixture
async def fuzzed(database: Database, clock: ManualClock) -> AsyncIterator[Coordinator]:
    """A coordinator whose default project is "shop", so calls naming none keep working as projects appear."""
    coord = await Coordinator.open(database.url, with_project(Config(), "shop"), clock=clock)
    try:
        yield coord
    finally:
        await coord.close()


@pytest.fixture
async def prepared(fuzzed: Coordinator) -> dict[str, str | None]:
    """A project with an epic, tasks, a dependency and a test; tokens of each role."""
    async with connect(fuzzed) as client:
        await make_project(client)
        epic = await ok(client, "create_epic", {"name": "E"})
        await ok(
            client,
            "expand_epic",
            {
                "epic_id": epic["id"],
                "tasks": [{"key": "k0", "title": "A"}, {"key": "k1", "title": "B", "depends_on": ["k0"]}],
            },
        )
        await ok(client, "create_test", {"task_id": 1, "description": "t"})
        tokens: dict[str, str | None] = {"operator": None}
        for role, persona in (("worker", "implementer"), ("planner", "planner"), ("observer", "implementer")):
            registered = await ok(client, "register_agent", {"name": role, "persona": persona, "role": role})
            tokens[role] = registered["token"]
    return tokens


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_random_arguments_never_crash_a_tool(
    fuzzed: Coordinator, prepared: dict[str, str | None], data: st.DataObject
) -> None:
    coord = fuzzed
    role = data.draw(st.sampled_from(sorted(prepared)))
    async with connect(coord, token=prepared[role]) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for _ in range(4):
            name = data.draw(st.sampled_from(TOOL_NAMES))
            arguments = data.draw(_arguments(tools[name]))
            if _seconds(arguments.get("wait_seconds")) > 0.05:
                arguments["wait_seconds"] = 0  # a long poll would only make the test slow
            result = await client.call_tool(name, arguments)
            text = text_of(result)
            if result.is_error:
                # An explained error: never the bare "Error executing tool X" of an unexpected exception.
                assert text.startswith(f"Error executing tool {name}: ") and len(text) > len(name) + 30, text
            else:
                assert tools[name].output_schema is not None
                jsonschema.validate(result.structured_content, tools[name].output_schema)
        assert not (await client.call_tool("ping", {})).is_error
    assert await coord.store.integrity_problems() == []
    assert await _broken_invariants(coord) == []


def _seconds(value: Any) -> float:
    """What pydantic would read from `value` as seconds (0 when it would refuse it)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0


async def _broken_invariants(coord: Coordinator) -> list[str]:
    """Rows that contradict each other: leases without in_progress, edges across projects, and so on."""
    checks = {
        "lease fields on a task that is not in progress": "SELECT id FROM tasks WHERE status <> 'in_progress' "
        "AND (lease_owner IS NOT NULL OR lease_token IS NOT NULL OR lease_expires_at IS NOT NULL)",
        "in-progress task without a lease": "SELECT id FROM tasks WHERE status = 'in_progress' "
        "AND (lease_owner IS NULL OR lease_token IS NULL OR lease_expires_at IS NULL)",
        "dependency across projects": "SELECT d.task_id AS id FROM task_dependencies d JOIN tasks a ON a.id = d.task_id "
        "JOIN tasks b ON b.id = d.depends_on_task_id WHERE a.project_id <> b.project_id",
        "task in another project than its epic": "SELECT t.id FROM tasks t JOIN epics e ON e.id = t.epic_id "
        "WHERE t.project_id <> e.project_id",
        "done task with a failing test": "SELECT t.id FROM tasks t JOIN task_tests tt ON tt.task_id = t.id "
        "WHERE t.status = 'done' AND tt.passes = FALSE AND tt.updated_at < t.completed_at",
        "attempts out of range": "SELECT id FROM tasks WHERE attempts < 0 OR attempts > max_attempts",
    }
    problems = []
    async with coord.store.transaction(write=False) as tx:
        for what, sql in checks.items():
            problems += [f"{what}: task {row['id']}" for row in await tx.fetch(sql)]
    return problems
