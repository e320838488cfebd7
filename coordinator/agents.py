"""Agents and personas: registration with a token (only its hash is stored), authentication."""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from coordinator.config import Config
from coordinator.context import Caller, ServiceBase, Wakeup, require_role
from coordinator.errors import InvalidInput, NotFound, PermissionDenied, YokeflowError
from coordinator.events import append_event
from coordinator.records import Agent, Persona
from coordinator.resources import resource_dir
from coordinator.storage.base import Store, encode_json
from coordinator.workspaces import Workspaces

TOKEN_PREFIX = "yf_"
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n?(.*)\Z", re.S)


class PersonaFile(BaseModel):
    """The front matter of `personas/<name>.md`; the markdown body is the prompt."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str
    model: str | None = None
    profile: Literal["planner", "worker", "observer", "yokeflow", "all"] = "worker"
    tools: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)


def parse_persona(path: Path) -> tuple[PersonaFile, str]:
    text = path.read_text(encoding="utf-8")
    match = _FRONT_MATTER.match(text)
    if not match:
        raise InvalidInput(str(path), "has no front matter", fix="start the file with a --- YAML block ---")
    try:
        spec = PersonaFile.model_validate(yaml.safe_load(match.group(1)) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise InvalidInput(str(path), f"invalid front matter: {exc}", fix="see docs/architecture.md") from exc
    if spec.name != path.stem:
        raise InvalidInput(str(path), f"declares name {spec.name!r}", fix=f"name the file {spec.name}.md")
    return spec, match.group(2).strip()


async def sync_personas(store: Store, folder: Path | None = None) -> list[str]:
    """Load every persona file into the store (insert or update); return their names."""
    loaded = [parse_persona(p) for p in sorted((folder or resource_dir("personas")).glob("*.md"))]
    async with store.transaction() as tx:
        now = store.clock()
        for spec, prompt in loaded:
            await tx.execute(
                "INSERT INTO personas (name, description, model, profile, tools, domains, prompt, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO UPDATE SET "
                "description = excluded.description, model = excluded.model, profile = excluded.profile, "
                "tools = excluded.tools, domains = excluded.domains, prompt = excluded.prompt, "
                "updated_at = excluded.updated_at",
                spec.name,
                spec.description,
                spec.model,
                spec.profile,
                encode_json(spec.tools),
                encode_json(spec.domains),
                prompt,
                now,
            )
    return [spec.name for spec, _ in loaded]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Registered(BaseModel):
    agent: Agent
    token: str = Field(description="Bearer token for this agent; shown once, only its hash is stored.")


class AgentService(ServiceBase):
    def __init__(
        self, store: Store, config: Config, wakeup: Wakeup, workspaces: Workspaces | None = None
    ) -> None:
        super().__init__(store, config, wakeup)
        self.workspaces = workspaces

    async def register(
        self,
        caller: Caller,
        *,
        persona: str,
        project: int | str | None = None,
        name: str | None = None,
        capabilities: list[str] | None = None,
        role: Literal["worker", "planner", "observer"] = "worker",
        worktree: str | None = None,
        pid: int | None = None,
    ) -> Registered:
        require_role(caller, ("operator", "planner"), "register agents")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.store.transaction() as tx:
            now = self.now()
            target = await self.resolve_project(tx, caller, project)
            known = await tx.fetchrow("SELECT name FROM personas WHERE name = $1", persona)
            if known is None:
                names = [r["name"] for r in await tx.fetch("SELECT name FROM personas ORDER BY name")]
                raise NotFound(
                    f"persona {persona!r} does not exist",
                    fix=f"use one of: {', '.join(names)}" if names else "add personas/<name>.md and restart",
                )
            row = await tx.fetchrow(
                "INSERT INTO agents (project_id, name, persona, role, capabilities, token_hash, status, "
                "last_heartbeat_at, worktree, pid, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $7) RETURNING *",
                target.id,
                name or persona,
                persona,
                role,
                encode_json(capabilities or []),
                hash_token(token),
                now,
                worktree,
                pid,
            )
            agent = Agent.model_validate(row)
            append_event(
                tx,
                now=now,
                kind="agent_registered",
                actor=caller.name,
                project_id=target.id,
                agent_id=agent.id,
                payload={"name": agent.name, "persona": persona, "role": role},
            )
        if self.workspaces is not None and worktree is None:
            agent = await self._with_worktree(caller, agent)
        return Registered(agent=agent, token=token)

    async def _with_worktree(self, caller: Caller, agent: Agent) -> Agent:
        """Give a new worker its worktree; if git refuses, stop the agent again and say why."""
        assert self.workspaces is not None
        try:
            path = await self.workspaces.prepare_agent(agent)
        except YokeflowError as exc:
            async with self.store.transaction() as tx:
                now = self.now()
                await tx.execute("UPDATE agents SET status = 'stopped' WHERE id = $1", agent.id)
                append_event(
                    tx,
                    now=now,
                    kind="agent_stopped",
                    actor=caller.name,
                    project_id=agent.project_id,
                    agent_id=agent.id,
                    payload={"reason": f"its worktree could not be created: {exc.message}"},
                )
            raise
        return agent if path is None else agent.model_copy(update={"worktree": path})

    async def update(
        self,
        caller: Caller,
        *,
        agent_id: int,
        pid: int | None = None,
        status: Literal["active", "stopped"] | None = None,
    ) -> Agent:
        """Record a supervised agent's process id, or stop or revive it (its token then fails or works)."""
        require_role(caller, ("operator", "planner"), "update agents")
        async with self.store.transaction() as tx:
            now = self.now()
            row = await tx.fetchrow("SELECT * FROM agents WHERE id = $1", agent_id)
            if row is None or (caller.agent is not None and row["project_id"] != caller.agent.project_id):
                raise NotFound(
                    f"agent {agent_id} does not exist in this project", fix="list agents with list_agents"
                )
            before = Agent.model_validate(row)
            row = await tx.fetchrow(
                "UPDATE agents SET pid = COALESCE($2, pid), status = COALESCE($3, status) WHERE id = $1 RETURNING *",
                agent_id,
                pid,
                status,
            )
            agent = Agent.model_validate(row)
            changes = {
                key: value
                for key, value in (("pid", pid), ("status", status))
                if value is not None and getattr(before, key) != value
            }
            if changes:
                append_event(
                    tx,
                    now=now,
                    kind="agent_stopped"
                    if status == "stopped" and before.status != "stopped"
                    else "agent_updated",
                    actor=caller.name,
                    project_id=agent.project_id,
                    agent_id=agent.id,
                    payload=changes,
                )
        return agent

    async def authenticate(self, token: str) -> Agent:
        """The agent a bearer token belongs to; a stopped agent's token no longer works."""
        row = await self.store.read_row("SELECT * FROM agents WHERE token_hash = $1", hash_token(token))
        if row is None or row["status"] == "stopped":
            raise PermissionDenied(
                "the bearer token is not valid" + (" (its agent was stopped)" if row else ""),
                fix="register the agent again (register_agent or `yokeflow launch`) and use the new token",
            )
        return Agent.model_validate(row)

    async def list_agents(self, caller: Caller, project: int | str | None = None) -> list[Agent]:
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            rows = await tx.fetch("SELECT * FROM agents WHERE project_id = $1 ORDER BY id", target.id)
        return [Agent.model_validate(r) for r in rows]

    async def personas(self) -> list[Persona]:
        async with self.store.transaction(write=False) as tx:
            rows = await tx.fetch("SELECT * FROM personas ORDER BY name")
        return [Persona.model_validate(r) for r in rows]
