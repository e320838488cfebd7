"""The client snippets of docs/clients.md parse, name real commands and paths, and actually connect."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from mcp import Client, StdioServerParameters

from coordinator.context import OPERATOR
from coordinator.service import Coordinator
from launcher.cli import build_parser
from tests.conftest import Database
from tests.test_mcp_support import http_client, ok, running_http_server
from tools.server import HTTP_PATHS, profile_tools

DOCS = Path(__file__).resolve().parent.parent / "docs"
CLIENTS = (DOCS / "clients.md").read_text(encoding="utf-8")
TOOLS_DOC = (DOCS / "mcp-tools.md").read_text(encoding="utf-8")
PLACEHOLDER_ROOT = "/path/to/your/repo"


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def _entries() -> list[dict[str, Any]]:
    entries = []
    for block in _blocks(CLIENTS, "json"):
        config = json.loads(block)
        entries += list((config.get("mcpServers") or config["servers"]).values())
    return entries


def _yokeflow() -> str:
    return str(Path(sys.executable).parent / "yokeflow")


def test_every_json_snippet_parses_and_points_at_real_commands_and_paths() -> None:
    entries = _entries()
    assert len(entries) >= 4
    for entry in entries:
        if "url" in entry:
            url = urlsplit(entry["url"])
            assert (url.scheme, url.hostname, url.port) == ("http", "127.0.0.1", 8765)
            assert url.path in HTTP_PATHS
            assert entry["headers"]["Authorization"].startswith("Bearer ")
        else:
            assert Path(entry["command"]).name == "yokeflow"
            assert Path(_yokeflow()).exists(), "the yokeflow command is installed beside this Python"
            args = build_parser().parse_args(entry["args"])
            assert args.command == "serve" and args.root == PLACEHOLDER_ROOT


def test_every_command_line_in_the_docs_parses() -> None:
    lines = [
        line
        for doc in (CLIENTS, TOOLS_DOC)
        for block in _blocks(doc, "sh")
        for line in block.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    claude = [shlex.split(line) for line in lines if line.startswith("claude mcp add")]
    assert len(claude) == 2
    http = claude[0]
    assert http[http.index("--transport") + 1] == "http"
    assert urlsplit(next(w for w in http if w.startswith("http://"))).path in HTTP_PATHS
    assert http[http.index("--header") + 1].startswith("Authorization: Bearer ")
    stdio = claude[1]
    assert build_parser().parse_args(stdio[stdio.index("--") + 2 :]).command == "serve"
    served = [shlex.split(line.split("#")[0]) for line in lines if line.startswith("yokeflow serve")]
    assert len(served) >= 5
    for words in served:
        args = build_parser().parse_args(words[1:])
        assert args.command == "serve"


async def test_the_claude_desktop_entry_starts_a_working_server(tmp_path: Path) -> None:
    entry = _entries()[0]
    args = [arg.replace(PLACEHOLDER_ROOT, str(tmp_path)) for arg in entry["args"]]
    async with Client(StdioServerParameters(command=_yokeflow(), args=args, cwd=tmp_path)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == {spec.name for spec in profile_tools("all")}
        await ok(client, "create_project", {"name": "desktop"})
        assert (await ok(client, "project_status", {}))["project"]["name"] == "desktop"
    assert (tmp_path / ".yokeflow" / "coordinator.db").exists(), "the database lives in the repository"


async def test_the_claude_code_http_entry_connects_with_its_token(database: Database) -> None:
    coord = await Coordinator.open(database.url)
    try:
        await coord.planning.create_project(OPERATOR, name="p")
        token = (await coord.agents.register(OPERATOR, persona="implementer")).token
    finally:
        await coord.close()
    entry = next(e for e in _entries() if e.get("type") == "http" and "${YOKEFLOW_TOKEN}" in str(e))
    header = entry["headers"]["Authorization"].replace("${YOKEFLOW_TOKEN}", token)
    with running_http_server(database.url) as base:
        url = base + urlsplit(entry["url"]).path
        async with http_client(url, token=header.removeprefix("Bearer ")) as client:
            assert "claim_task" in {t.name for t in (await client.list_tools()).tools}
            claimed = await ok(client, "claim_task", {})
            assert claimed["status"] == "no_task" and claimed["reason"] == "all_done"


@pytest.mark.parametrize("spec", profile_tools("all"), ids=lambda spec: spec.name)
def test_mcp_tools_md_documents_every_tool_and_argument(spec: Any) -> None:
    match = re.search(rf"^#### `{spec.name}`\n(.*?)(?=^###)", TOOLS_DOC + "\n###", re.S | re.M)
    assert match, f"docs/mcp-tools.md has no section for {spec.name}"
    section = match.group(1)
    for argument in spec.tool.parameters.get("properties", {}):
        assert f"| `{argument}` |" in section, f"{spec.name}.{argument} is not documented"
    assert "Annotations:" in section and "Result:" in section
