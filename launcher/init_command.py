"""`yokeflow init`: the `.claude/` expert folders of the configured domains and a CLAUDE.md.

Idempotent: a file that is missing is created, one equal to its template is left alone, and
one that differs (edited by hand) is kept unless `--force` is given. An `expertise.yaml` is
never overwritten: it holds what was learned.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from pathlib import Path

from coordinator.config import Config, load_config
from coordinator.expertise_docs import expertise_file, question_md, self_improve_md
from coordinator.expertise_files import write_atomically
from coordinator.expertise_model import Expertise
from coordinator.expertise_render import Figures, render_yaml
from launcher.files import read_text_file

OVERVIEW_LINES = 40
OVERVIEW_CHARS = 3000


def add_init_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `init` to the `yokeflow` command line."""
    init = commands.add_parser(
        "init", help="create the .claude/ expert folders of the learning domains and a CLAUDE.md for agents"
    )
    init.add_argument("--spec", metavar="FILE", help="the project's specification, summarised in CLAUDE.md")
    init.add_argument(
        "--force",
        action="store_true",
        help="overwrite CLAUDE.md and the expert commands where they differ from the templates "
        "(expertise.yaml is never overwritten)",
    )
    init.set_defaults(handler=cmd_init)


async def cmd_init(args: argparse.Namespace) -> int:
    root = await asyncio.to_thread(Path(args.root).resolve)
    config = load_config(root, path=Path(args.config) if args.config else None)
    spec = None
    if args.spec:
        spec_path = await asyncio.to_thread(Path(args.spec).resolve)
        spec = (spec_path, await read_text_file(spec_path, "the project's specification (markdown or text)"))
    files = bootstrap_files(root, config, spec)
    for line in await asyncio.to_thread(_write, root, files, force=args.force):
        print(line)
    return 0


def bootstrap_files(root: Path, config: Config, spec: tuple[Path, str] | None) -> dict[str, str]:
    """The files `init` writes, relative to `root`, with their contents."""
    learning = config.learning
    files: dict[str, str] = {"CLAUDE.md": claude_md(root, learning.domains, spec)}
    for domain in learning.domains:
        folder = Path(expertise_file(domain)).parent.as_posix()
        files[expertise_file(domain)] = render_yaml(
            domain, Expertise(), Figures(updated_at=time.time()), learning.expertise_max_lines
        )
        files[f"{folder}/question.md"] = question_md(domain)
        files[f"{folder}/self-improve.md"] = self_improve_md(domain, learning.expertise_max_lines)
    return files


def _write(root: Path, files: dict[str, str], *, force: bool) -> list[str]:
    said = []
    for relative, text in files.items():
        path = root / relative
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current is None:
            write_atomically(path, text)
            said.append(f"created   {relative}")
        elif relative.endswith("expertise.yaml") or current == text:
            said.append(f"kept      {relative}")
        elif force:
            write_atomically(path, text)
            said.append(f"rewrote   {relative}")
        else:
            said.append(f"kept      {relative} (edited by hand; --force overwrites it)")
    return said


def _overview(spec: str) -> tuple[str | None, str]:
    """The spec's title (its first `# ` heading) and its opening, up to its second heading."""
    lines = spec.strip().splitlines()
    title = next((line[2:].strip() for line in lines if line.startswith("# ")), None)
    body: list[str] = []
    for line in lines:
        if line.startswith("# ") and line[2:].strip() == title and not body:
            continue
        if re.match(r"^#{1,2} ", line) and any(part.strip() for part in body):
            break
        body.append(line)
    text = "\n".join(body[:OVERVIEW_LINES]).strip()
    return title, text[:OVERVIEW_CHARS].rstrip()


def claude_md(root: Path, domains: list[str], spec: tuple[Path, str] | None) -> str:
    """CLAUDE.md: the project in brief, and how agents work with the coordinator."""
    title, overview = _overview(spec[1]) if spec else (None, "")
    name = title or root.name
    if spec is not None:
        where = spec[0].relative_to(root).as_posix() if spec[0].is_relative_to(root) else str(spec[0])
        about = f"{overview or '(The specification has no overview.)'}\n\nThe full specification: `{where}`."
    else:
        about = "(Describe the project here, or run `yokeflow init --spec FILE --force`.)"
    listed = ", ".join(f"`{d}`" for d in domains)
    return f"""\
# {name}

{about}

## How agents work here

Several AI agents build this project at once, coordinated by YokeFlow Coordinator over MCP.

1. **Claim** a task with `claim_task` (give `wait_seconds` to wait for one). The answer holds the
   task, a lease, and its context: the results of the tasks it depends on, its tests, a hand-off
   note, the error of an earlier attempt, and the expertise of its domain.
2. **Heartbeat** with `heartbeat` while you work, well within the lease's `ttl_seconds`. If a call
   answers "lease lost", stop working on that task: someone else holds it now.
3. **Finish** with `complete_task` (a summary for the tasks that build on yours, the files you
   changed, your commit) or `fail_task` (what went wrong; the task is retried after a backoff).
   `release_task` hands a task back untouched.
4. Record test results with `update_test_result` (a task with a failing test cannot be
   completed) and what the work cost with `record_cost`.

### Worktrees and branches

Each agent works in its own git worktree, on its task's branch; `claim_task` answers its path.
Commit your work there. The merge queue merges completed branches into the target branch behind
the test gate; never switch, reset or commit in the main checkout.

### Expertise

What agents learn is kept per domain ({listed}) in
`.claude/commands/experts/<domain>/expertise.yaml`, and each claim carries the expertise of its
task's domain. Add to it with `record_learning` (a pattern, technique, gotcha, core file, or a
failure and its fix) and read it with `get_expertise`; failures, their fixes and the files you
touch are learned from `fail_task` and `complete_task` by themselves. The expert commands next to
each expertise.yaml (`question.md`, `self-improve.md`) answer questions from it and bring it up
to date with the code.
"""
