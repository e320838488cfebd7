"""Steering by people: a task's priority, parking it, and assigning it to one agent.

None of these moves a task between states (that is `WorkService`); they change which task a
claim picks and who may pick it. Each change is one transaction with its audit event:
`task_priority_changed`, `task_parked`, `task_unparked`, `task_assigned`. A parked task is never
claimed; an assigned task is claimed only by its agent (see `leasing.ready_condition`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from coordinator.context import Caller, Role, ServiceBase, require_role
from coordinator.errors import InvalidInput, NotFound, StateConflict
from coordinator.events import task_event
from coordinator.records import Agent, Task, TaskStatus
from coordinator.storage.base import Tx

PRIORITY_LIMIT = 1_000_000
_STEERERS: tuple[Role, ...] = ("operator", "planner")
_FINISHED = (TaskStatus.DONE, TaskStatus.CANCELLED)


class SteeredTask(Task):
    """A task with its steering: whether it is parked and which agent it is assigned to."""

    parked: bool = Field(description="A parked task is never claimed until it is unparked.")
    assigned_agent: int | None = Field(description="Only this agent may claim the task; null: any agent.")


class Assignment(BaseModel):
    task: SteeredTask
    lease_held_by: int | None = Field(
        description="The agent holding a live lease on the task now; the assignment does not take it away."
    )
    message: str


async def steered_task(
    tx: Tx, task_id: int, *, project_id: int | None, for_update: bool = False
) -> SteeredTask:
    """The task with its steering columns (NotFound outside `project_id`)."""
    lock = " FOR UPDATE" if for_update and tx.backend == "postgresql" else ""
    row = await tx.fetchrow(f"SELECT * FROM tasks WHERE id = $1{lock}", task_id)
    if row is None or (project_id is not None and row["project_id"] != project_id):
        raise NotFound(f"task {task_id} does not exist in this project", fix="list the project's tasks")
    return SteeredTask.model_validate(row)


class SteeringService(ServiceBase):
    async def steer(
        self, caller: Caller, *, task_id: int, priority: int | None = None, parked: bool | None = None
    ) -> SteeredTask:
        """Set the priority and/or park or unpark the task, in one transaction; nothing else is recomputed."""
        require_role(caller, _STEERERS, "steer tasks")
        if priority is None and parked is None:
            raise InvalidInput("body", "names no change", fix="give priority, parked, or both")
        if priority is not None and not -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT:
            raise InvalidInput(
                "priority", f"{priority} is out of range", fix=f"give -{PRIORITY_LIMIT} to {PRIORITY_LIMIT}"
            )
        async with self.store.transaction() as tx:
            now = self.now()
            task = await steered_task(tx, task_id, project_id=caller.project_id, for_update=True)
            if parked is not None and parked != task.parked and task.status in _FINISHED:
                raise StateConflict(
                    f"cannot {'park' if parked else 'unpark'} task {task_id}: it is {task.status.value}",
                    fix="reopen it first (status pending)",
                )
            changes: list[tuple[str, dict[str, Any]]] = []
            if priority is not None and priority != task.priority:
                changes.append(("task_priority_changed", {"before": task.priority, "after": priority}))
            if parked is not None and parked != task.parked:
                changes.append(("task_parked" if parked else "task_unparked", {}))
            if not changes:
                return task
            row = await tx.fetchrow(
                "UPDATE tasks SET priority = COALESCE($2, priority), parked = COALESCE($3, parked), "
                "updated_at = $4 WHERE id = $1 RETURNING *",
                task_id,
                priority,
                parked,
                now,
            )
            for kind, payload in changes:
                task_event(tx, now, kind, caller, task, None, payload)
        self.wakeup.notify()
        return SteeredTask.model_validate(row)

    async def assign(self, caller: Caller, *, task_id: int, agent_id: int | None) -> Assignment:
        """Let only `agent_id` claim the task from now on (None: any agent); a held lease stays where it is."""
        require_role(caller, _STEERERS, "assign tasks")
        async with self.store.transaction() as tx:
            now = self.now()
            task = await steered_task(tx, task_id, project_id=caller.project_id, for_update=True)
            if task.status in _FINISHED:
                raise StateConflict(
                    f"cannot assign task {task_id}: it is {task.status.value}", fix="reopen it first"
                )
            if agent_id is not None:
                await _check_assignee(tx, task, agent_id)
            updated = task
            if agent_id != task.assigned_agent:
                row = await tx.fetchrow(
                    "UPDATE tasks SET assigned_agent = $2, updated_at = $3 WHERE id = $1 RETURNING *",
                    task_id,
                    agent_id,
                    now,
                )
                updated = SteeredTask.model_validate(row)
                task_event(
                    tx,
                    now,
                    "task_assigned",
                    caller,
                    task,
                    None,
                    {"agent_id": agent_id, "before": task.assigned_agent},
                )
            live = task.status == TaskStatus.IN_PROGRESS and (task.lease_expires_at or 0) >= now
            held = task.lease_owner if live else None
        if agent_id != task.assigned_agent:
            self.wakeup.notify()
        return Assignment(
            task=updated,
            lease_held_by=held,
            message=_assignment_message(task_id, agent_id, held),
        )


async def _check_assignee(tx: Tx, task: Task, agent_id: int) -> None:
    row = await tx.fetchrow("SELECT * FROM agents WHERE id = $1", agent_id)
    if row is None or row["project_id"] != task.project_id:
        raise NotFound(
            f"agent {agent_id} does not exist in this project", fix="list the project's agents and pick one"
        )
    agent = Agent.model_validate(row)
    if agent.role != "worker" or agent.status == "stopped":
        raise InvalidInput(
            "agent_id",
            f"agent {agent_id} cannot claim tasks (it is {'stopped' if agent.status == 'stopped' else 'a ' + agent.role})",
            fix="assign the task to an active worker",
        )
    if task.persona is not None and task.persona != agent.persona:
        raise InvalidInput(
            "agent_id",
            f"task {task.id} is for the {task.persona} persona and agent {agent_id} is a {agent.persona}",
            fix=f"assign it to a {task.persona} agent",
        )


def _assignment_message(task_id: int, agent_id: int | None, held: int | None) -> str:
    who = f"only agent {agent_id}" if agent_id is not None else "any suitable agent"
    said = f"task {task_id}: {who} may claim it next"
    if held is not None and held != agent_id:
        said += f"; agent {held} still holds its lease and keeps it until it finishes, releases or expires"
    return said + "."
