"""Projects: the list, one project's status, pausing and resuming claims; its agents, events and sessions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from coordinator.observe import AgentView, EventPage, ProjectStatus
from coordinator.records import Project
from coordinator.rest.api import Call, RouteTable
from coordinator.rest.params import Cursor, Id, Limit, ProjectPath, Strict
from coordinator.rest.reads import ProjectSummary
from coordinator.sessions import SessionList

PROJECTS = RouteTable("projects")


class ProjectList(BaseModel):
    projects: list[ProjectSummary]


class AgentList(BaseModel):
    agents: list[AgentView]


class AgentQuery(Strict):
    status: Literal["active", "lost", "stopped"] | None = Field(
        default=None, description="Only agents in this state."
    )


class SessionQuery(Strict):
    limit: Limit = 20


class EventQuery(Strict):
    after_id: Cursor = 0
    limit: Limit = 100
    task_id: Id | None = Field(default=None, description="Only the events of this task.")


@PROJECTS.get("/api/projects")
async def list_projects(call: Call) -> ProjectList:
    """Every project with its task counts (an agent sees its own project only)."""
    return ProjectList(projects=await call.reads.projects(call.caller))


@PROJECTS.get("/api/projects/{project}")
async def project_status(call: Call, path: ProjectPath) -> ProjectStatus:
    """A project's status: tasks per state, ready and running tasks, tests, epics, active agents.

    `last_event_id` is where to start the event stream (`/api/events?last_event_id=`) so that
    nothing between this answer and the stream is missed.
    """
    return await call.coord.observe.project_status(call.caller, project=path.project)


@PROJECTS.post("/api/projects/{project}/pause")
async def pause_project(call: Call, path: ProjectPath) -> Project:
    """Pause claiming: claims answer `paused` until the project is resumed; held leases go on."""
    return await call.coord.planning.set_project_status(call.caller, project=path.project, status="paused")


@PROJECTS.post("/api/projects/{project}/resume")
async def resume_project(call: Call, path: ProjectPath) -> Project:
    """Resume claiming in a paused project."""
    return await call.coord.planning.set_project_status(call.caller, project=path.project, status="active")


@PROJECTS.get("/api/projects/{project}/agents")
async def list_agents(call: Call, path: ProjectPath, query: AgentQuery) -> AgentList:
    """The project's agents with the tasks they hold live leases on (never their tokens)."""
    agents = await call.coord.observe.list_agents(call.caller, project=path.project, status=query.status)
    return AgentList(agents=agents)


@PROJECTS.get("/api/projects/{project}/events")
async def list_events(call: Call, path: ProjectPath, query: EventQuery) -> EventPage:
    """The project's audit log after `after_id`, oldest first, one page at a time."""
    return await call.coord.observe.get_events(
        call.caller, project=path.project, after_id=query.after_id, limit=query.limit, task_id=query.task_id
    )


@PROJECTS.get("/api/projects/{project}/sessions")
async def list_sessions(call: Call, path: ProjectPath, query: SessionQuery) -> SessionList:
    """The project's latest agent sessions, newest first: one per lease, from its claim to how it ended."""
    sessions = await call.coord.observe.session_history(call.caller, project=path.project, limit=query.limit)
    return SessionList(sessions=sessions)
