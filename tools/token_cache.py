"""A short-lived in-process cache of bearer token → agent.

Each tool call names its agent by token, and reading the agent costs a database round trip per
call — as much as a small write. Busy agents (many calls a second) skip it while their entry is
fresh. The price is bounded staleness: an agent stopped by another process keeps access for at
most `seconds`; whoever stops an agent in this process calls `forget` so it loses access at once.
Failed look-ups are never cached. Keys are token hashes, so the cache holds no usable token.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from coordinator.agents import hash_token
from coordinator.records import Agent

DEFAULT_SECONDS = 5.0


class TokenCache:
    def __init__(
        self,
        seconds: float = DEFAULT_SECONDS,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, Agent]] = {}

    def get(self, token: str) -> Agent | None:
        """The agent of a token seen less than `seconds` ago, else None."""
        key = hash_token(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, agent = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return agent

    def put(self, token: str, agent: Agent) -> None:
        if len(self._entries) >= self.max_entries:
            self._drop_expired()
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[hash_token(token)] = (self._clock() + self.seconds, agent)

    def forget(self, agent_id: int) -> None:
        """Drop every entry of this agent (call it when the agent is stopped)."""
        self._entries = {k: v for k, v in self._entries.items() if v[1].id != agent_id}

    def _drop_expired(self) -> None:
        now = self._clock()
        self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
