"""The execution plan: predicted files, conflicts, batches, worktrees, makespan, patches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.errors import CycleError, InvalidInput, NotFound
from coordinator.execution_plan import (
    ExecutionPlan,
    ExecutionPlanBuilder,
    FileConflict,
    PlanPatch,
    find_conflicts,
    predict_files,
    slugify,
)
from coordinator.graph import Edge


def task(task_id: int, epic_id: int | None = None, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "epic_id": epic_id, "title": f"task {task_id}", **fields}


# ---------------------------------------------------------------------- predicted files


@pytest.mark.parametrize(
    ("text", "files"),
    [
        ("Modify src/api/users.py and core/database.py.", ["src/api/users.py", "core/database.py"]),
        ("Add schema/001.sql, then `tests/test_graph.py`.", ["schema/001.sql", "tests/test_graph.py"]),
        ("Edit ./scripts/run.sh and ../lib/x.ts", ["scripts/run.sh", "../lib/x.ts"]),
        ("See coordinator.storage.sqlite for the store.", ["coordinator/storage/sqlite.py"]),
        ("Update README.md and package.json", ["README.md", "package.json"]),
        ("Add .github/workflows/ci.yml and web/index.htm", [".github/workflows/ci.yml", "web/index.htm"]),
        ("Use Node.js or Next.js, e.g. with i.e. etc. in 3.11 or v2.0.1", []),
        ("Visit https://example.com/docs/page.html or www.python.org", []),
        ("Call self.db.acquire() and os.path.join, then requests.get(url)", []),
        ("config.yaml.example is not a file we know; app.module.ts is", ["app.module.ts"]),
        ("src/api/users.py twice: src/api/users.py", ["src/api/users.py"]),
    ],
)
def test_predict_files_finds_paths_and_modules(text: str, files: list[str]) -> None:
    assert predict_files(text) == files


def test_predicted_files_come_from_the_task_and_area_files_from_its_epic() -> None:
    plan = ExecutionPlanBuilder(
        [task(1, 1, description="Write core/database.py", predicted_files=["schema/001.sql"])],
        [{"id": 1, "name": "Storage", "description": "Code lives in core/database.py and core/models.py"}],
    ).build()
    planned = plan.task(1)
    assert planned.predicted_files == ["core/database.py", "schema/001.sql"]
    assert planned.area_files == ["core/models.py"]


# ---------------------------------------------------------------------- conflicts


def test_conflicts_of_each_kind_name_their_tasks_and_files() -> None:
    own = {1: {"core/db.py", "core/a.py"}, 2: {"core/db.py", "core/a.py"}, 3: {"core/b.py"}, 4: {"README.md"}}
    area = {1: set(), 2: set(), 3: {"core/models.py"}, 4: {"core/models.py"}, 5: set()}
    assert find_conflicts(own, area) == [
        FileConflict(kind="same_file", tasks=[1, 2], files=["core/a.py", "core/db.py"]),
        FileConflict(kind="same_directory", tasks=[1, 2, 3], files=["core/a.py", "core/b.py", "core/db.py"]),
        FileConflict(kind="potential", tasks=[3, 4], files=["core/models.py"]),
    ]


def test_tasks_sharing_a_file_never_share_a_batch() -> None:
    builder = ExecutionPlanBuilder(
        [
            task(1, description="edit core/db.py", estimate=2),
            task(2, description="edit core/db.py"),
            task(3, description="edit core/db.py"),
            task(4),
            task(5),
        ],
        edges=[Edge(2, 5)],
    )
    plan = builder.build()
    assert [b.tasks for b in plan.batches] == [[1, 4], [2], [3, 5]]
    assert plan.conflicts == [FileConflict(kind="same_file", tasks=[1, 2, 3], files=["core/db.py"])]


@st.composite
def random_projects(draw: st.DrawFn) -> ExecutionPlanBuilder:
    count = draw(st.integers(1, 15))
    files = st.lists(st.sampled_from(["a/x.py", "a/y.py", "b/z.py", "c.md"]), max_size=2)
    tasks = [task(i, draw(st.sampled_from([None, 1, 2])), predicted_files=draw(files)) for i in range(count)]
    pairs = draw(
        st.lists(st.tuples(st.integers(0, count - 1), st.integers(0, count - 1)), max_size=2 * count)
    )
    edges = {Edge(min(a, b), max(a, b), draw(st.sampled_from(["hard", "soft"]))) for a, b in pairs if a != b}
    unique = {(e.before, e.after): e for e in edges}
    return ExecutionPlanBuilder(tasks, [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}], unique.values())


@given(random_projects())
def test_random_plans_keep_dependencies_and_separate_shared_files(builder: ExecutionPlanBuilder) -> None:
    plan = builder.build()
    batch_of = {t.id: t.batch for t in plan.tasks}
    assert sorted(batch_of) == sorted(builder.tasks)
    for edge in builder.edges:
        assert batch_of[edge.before] < batch_of[edge.after]
    for conflict in plan.conflicts:
        if conflict.kind == "same_file":
            assert len({batch_of[t] for t in conflict.tasks}) == len(conflict.tasks)
    assert all(batch.tasks for batch in plan.batches)


# ---------------------------------------------------------------------- worktrees


def test_each_epic_of_a_batch_gets_a_worktree_named_after_it() -> None:
    plan = ExecutionPlanBuilder(
        [task(1, 1), task(2, 1), task(3, 2), task(4, 2), task(5)],
        [{"id": 1, "name": "REST API"}, {"id": 2, "name": "Database & Models"}],
        [Edge(1, 2)],
    ).build()
    assert plan.worktrees == {
        "batch1-epic-rest-api": [1],
        "batch1-epic-database-models": [3, 4],
        "batch1-epic-none": [5],
        "batch2-epic-rest-api": [2],
    }
    assert plan.task(3).worktree == "batch1-epic-database-models"


def test_past_max_concurrency_the_smallest_epics_share_a_worktree() -> None:
    tasks = [
        task(i, epic, estimate=work)
        for i, (epic, work) in enumerate([(1, 5), (2, 4), (3, 1), (4, 1), (5, 2)])
    ]
    epics = [{"id": e, "name": name} for e, name in enumerate(["", "api", "db", "ui", "docs", "ops"]) if e]
    # by work: api 5, db 4, ops 2, ui 1, docs 1; each extra epic joins the lightest worktree
    plan = ExecutionPlanBuilder(tasks, epics, max_concurrency=2).build()
    assert plan.worktrees == {"batch1-epic-api-and-2-more": [0, 2, 3], "batch1-epic-db-and-ops": [1, 4]}
    three = ExecutionPlanBuilder(tasks, epics, max_concurrency=3).build()
    assert sorted(three.worktrees) == ["batch1-epic-api", "batch1-epic-db", "batch1-epic-ops-and-2-more"]


def test_by_task_gives_each_task_a_worktree_up_to_max_concurrency() -> None:
    tasks = [task(i, 1, estimate=work) for i, work in [(1, 5), (2, 4), (3, 1), (4, 1), (5, 2)]]
    plan = ExecutionPlanBuilder(tasks, [{"id": 1, "name": "api"}], strategy="by_task").build()
    assert plan.strategy == "by_task"
    assert sorted(plan.worktrees) == [
        "batch1-task-1",
        "batch1-task-2",
        "batch1-task-3-and-4",
        "batch1-task-5",
    ]
    # by work: 1 (5), 2 (4), 5 (2), 3 (1), 4 (1); each extra task joins the lightest worktree
    two = ExecutionPlanBuilder(tasks, max_concurrency=2, strategy="by_task").build()
    assert two.worktrees == {"batch1-task-1-and-2-more": [1, 3, 4], "batch1-task-2-and-5": [2, 5]}


def test_smart_puts_tasks_that_might_touch_the_same_files_in_one_worktree() -> None:
    tasks = [
        task(1, 1, predicted_files=["src/api/users.py"]),
        task(2, 1, predicted_files=["src/api/orders.py"]),  # same folder as 1
        task(3, 1, predicted_files=["web/app.js"]),
        task(4, 2),
        task(5, 2),  # 4 and 5: their epic names a file, and neither names its own
        task(6, 1, predicted_files=["src/api/users.py"]),  # the same file as 1: a later batch
    ]
    epics = [{"id": 1, "name": "api"}, {"id": 2, "name": "docs", "description": "Write docs/guide.md"}]
    plan = ExecutionPlanBuilder(tasks, epics, strategy="smart").build()
    assert plan.worktrees == {
        "batch1-task-1-and-2": [1, 2],
        "batch1-task-3": [3],
        "batch1-task-4-and-5": [4, 5],
        "batch2-task-6": [6],
    }
    by_epic = ExecutionPlanBuilder(tasks, epics).build()
    assert sorted(by_epic.worktrees) == ["batch1-epic-api", "batch1-epic-docs", "batch2-epic-api"]


def test_epic_names_become_distinct_slugs() -> None:
    assert slugify("  Auth / Sign-in (OAuth2)!  ") == "auth-sign-in-oauth2"
    plan = ExecutionPlanBuilder(
        [task(1, 1), task(2, 2), task(3, 3)],
        [{"id": 1, "name": "API"}, {"id": 2, "name": "api"}, {"id": 3, "name": "!!!"}],
    ).build()
    assert sorted(plan.worktrees) == ["batch1-epic-api", "batch1-epic-api-2", "batch1-epic-epic3"]


# ---------------------------------------------------------------------- makespan


def test_makespan_figures_match_hand_computed_values() -> None:
    # A(3) -> C(1), B(1) -> D(3), E(2) alone; 2 agents
    tasks = [
        task(1, estimate=3),
        task(2, estimate=1),
        task(3, estimate=1),
        task(4, estimate=3),
        task(5, estimate=2),
    ]
    plan = ExecutionPlanBuilder(tasks, edges=[Edge(1, 3), Edge(2, 4)], max_concurrency=2).build()
    makespan = plan.makespan
    assert makespan.agents == 2
    assert makespan.serial == 10.0
    assert makespan.critical_path == 4.0
    assert makespan.lower_bound == 5.0  # max(4, 10 / 2)
    # pull: t0 A and B; t1 D (remaining 3 beats E's 2); t3 E; t4 C; all done at 5
    assert makespan.estimate == 5.0
    # barrier: batch 1 = A, B, E on 2 agents -> 3; batch 2 = C, D -> 3
    assert makespan.batch_barrier == 6.0
    assert [b.duration for b in plan.batches] == [3.0, 3.0]
    assert plan.critical_path.tasks == [1, 3]  # ties go to the lowest id


def test_more_agents_than_worktrees_can_be_asked_for() -> None:
    tasks = [task(i, estimate=1) for i in range(8)]
    assert ExecutionPlanBuilder(tasks, max_concurrency=2, agents=8).build().makespan.estimate == 1.0
    assert ExecutionPlanBuilder(tasks, max_concurrency=2).build().makespan.estimate == 4.0


# ---------------------------------------------------------------------- inputs and output


def test_finished_tasks_are_left_out_and_their_edges_satisfied() -> None:
    plan = ExecutionPlanBuilder(
        [task(1, status="done"), task(2, status="cancelled"), task(3), task(4, status="in_progress")],
        edges=[Edge(1, 3), Edge(2, 4), Edge(3, 4)],
    ).build()
    assert plan.finished_tasks == [1, 2]
    assert [b.tasks for b in plan.batches] == [[3], [4]]


def test_store_records_can_be_given_as_objects() -> None:
    @dataclass
    class Row:
        id: int
        epic_id: int | None
        title: str
        description: str
        priority: int
        estimate: float
        predicted_files: list[str]
        status: str
        lease_token: str | None = None

    plan = ExecutionPlanBuilder([Row(1, None, "t", "edit x/y.py", 0, 2.0, [], "pending")]).build()
    assert plan.task(1).predicted_files == ["x/y.py"]


def test_the_plan_survives_a_json_round_trip() -> None:
    builder = ExecutionPlanBuilder(
        [task(1, 1, description="core/a.py"), task(2, 1, description="core/a.py")],
        [{"id": 1, "name": "Core"}],
    )
    plan = builder.apply_patch(
        builder.build(), PlanPatch(sequential=[(2, 1)], pins={2: 1}, worktrees={1: "w1"})
    ).plan
    assert ExecutionPlan.model_validate(plan.model_dump(mode="json")) == plan


def test_an_empty_project_has_an_empty_plan() -> None:
    plan = ExecutionPlanBuilder([]).build(now=datetime(2026, 1, 1, tzinfo=UTC))
    assert plan.batches == [] and plan.makespan.estimate == 0.0 and plan.created_at.year == 2026


def test_max_concurrency_must_be_positive() -> None:
    with pytest.raises(InvalidInput) as caught:
        ExecutionPlanBuilder([], max_concurrency=0)
    assert caught.value.field == "max_concurrency"


# ---------------------------------------------------------------------- patches


def patch_builder() -> ExecutionPlanBuilder:
    """1 -> 2 -> 3; 4 and 5 alone; 6 done."""
    return ExecutionPlanBuilder(
        [task(1), task(2), task(3), task(4), task(5), task(6, status="done")],
        edges=[Edge(1, 2), Edge(2, 3)],
    )


def test_a_task_can_be_moved_to_another_worktree_and_back() -> None:
    builder = patch_builder()
    plan = builder.apply_patch(builder.build(), PlanPatch(worktrees={4: "my-tree"})).plan
    assert plan.task(4).worktree == "my-tree"
    assert plan.worktrees["my-tree"] == [4]
    assert builder.build(plan.adjustments).task(4).worktree == "my-tree"
    back = builder.apply_patch(plan, PlanPatch(worktrees={4: None})).plan
    assert back.task(4).worktree == "batch1-epic-none"


def test_forcing_two_tasks_sequential_returns_the_edge_to_store() -> None:
    builder = patch_builder()
    result = builder.apply_patch(builder.build(), PlanPatch(sequential=[(4, 5)]))
    assert result.edges_to_add == [Edge(4, 5, "hard")]
    assert result.plan.task(5).batch == result.plan.task(4).batch + 1
    assert result.plan.adjustments.sequential == [Edge(4, 5, "hard")]
    again = builder.apply_patch(result.plan, PlanPatch(sequential=[(4, 5), (1, 2)]))
    assert again.edges_to_add == []


def test_a_sequential_patch_that_closes_a_cycle_is_refused() -> None:
    builder = patch_builder()
    plan = builder.build()
    before = plan.model_dump()
    with pytest.raises(CycleError) as caught:
        builder.apply_patch(plan, PlanPatch(sequential=[(3, 1)]))
    assert caught.value.cycle == [1, 2, 3, 1]
    assert plan.model_dump() == before


def test_a_task_can_be_pinned_to_a_later_batch_and_unpinned() -> None:
    builder = patch_builder()
    plan = builder.apply_patch(builder.build(), PlanPatch(pins={1: 2})).plan
    assert [b.tasks for b in plan.batches] == [[4, 5], [1], [2], [3]]
    unpinned = builder.apply_patch(plan, PlanPatch(pins={1: None})).plan
    assert [b.tasks for b in unpinned.batches] == [[1, 4, 5], [2], [3]]


def test_a_pin_that_cannot_hold_is_refused() -> None:
    builder = patch_builder()
    plan = builder.build()
    with pytest.raises(
        InvalidInput, match="task 3 cannot run in batch 1: its dependencies hold it until batch 3"
    ):
        builder.apply_patch(plan, PlanPatch(pins={3: 1}))
    with pytest.raises(InvalidInput, match="task 4 cannot wait until batch 9"):
        builder.apply_patch(plan, PlanPatch(pins={4: 9}))
    with pytest.raises(InvalidInput) as caught:
        builder.apply_patch(plan, PlanPatch(pins={4: 0}))
    assert caught.value.field == "pins[4]"


@pytest.mark.parametrize(
    ("patch", "error", "message"),
    [
        (PlanPatch(worktrees={42: "x"}), NotFound, "task 42 does not exist"),
        (PlanPatch(pins={42: 1}), NotFound, "task 42 does not exist"),
        (PlanPatch(sequential=[(1, 42)]), NotFound, "task 42 does not exist"),
        (PlanPatch(worktrees={6: "x"}), InvalidInput, "task 6 is done"),
        (PlanPatch(worktrees={4: "../escape"}), InvalidInput, "'../escape' is not a usable worktree name"),
        (PlanPatch(sequential=[(4, 4)]), InvalidInput, "task 4 cannot depend on itself"),
    ],
)
def test_bad_patches_are_refused_naming_the_problem(
    patch: PlanPatch, error: type[Exception], message: str
) -> None:
    builder = patch_builder()
    with pytest.raises(error, match=message):
        builder.apply_patch(builder.build(), patch)


def test_adjustments_that_no_longer_apply_are_dropped_with_a_note() -> None:
    builder = patch_builder()
    plan = builder.apply_patch(
        builder.build(), PlanPatch(worktrees={4: "w"}, pins={5: 2}, sequential=[(4, 5)])
    ).plan
    later = ExecutionPlanBuilder(
        [task(1), task(2), task(3), task(4, status="done"), task(5, status="done")],
        edges=[Edge(1, 2), Edge(2, 3)],
    ).build(plan.adjustments)
    assert later.adjustments.model_dump() == {"worktrees": {}, "sequential": [], "pins": {}}
    assert later.notes == [
        "sequential 4 -> 5 dropped: a task is finished or gone",
        "pin of task 5 dropped: the task is finished or gone",
        "worktree of task 4 dropped: the task is finished or gone",
    ]
