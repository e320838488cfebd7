"""The web dashboard in a real headless Chromium, against the real HTTP app on loopback.

No mocks: each test serves a real SQLite database with uvicorn (the same app as `yokeflow serve
--http`), changes tasks through the real MCP worker tools or the store, and watches the page
follow from the event stream. Steering done in the page (drag, park, assign, pause, force
sequential) is checked in the store.

The browser is Debian's Chromium (/usr/bin/chromium, or $YOKEFLOW_CHROMIUM) driven by Playwright
for Python with `executable_path` (no `playwright install`). Without it the browser tests are
skipped, except under CI=true, where a missing browser fails them. Every browser test saves a
screenshot to test-artifacts/dashboard/<test name>.png (test-artifacts/ is ignored by git).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest

from coordinator.config import Config
from coordinator.context import OPERATOR
from coordinator.service import Coordinator
from launcher.demo import DEMO_PERSONAS, import_demo_plan, make_repository
from launcher.mcp_client import OPERATOR_PATH, AgentClient
from launcher.runners.sim import SimOptions, SimRunner
from launcher.serve import build_http_app
from launcher.team import LaunchReport, LaunchSettings, launch
from tests.sim_support import import_plan
from tests.test_mcp_support import free_port, serve_in_thread

CHROMIUM = Path(os.environ.get("YOKEFLOW_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"
# As root in a container: no sandbox; no GPU; and no background traffic to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000

# Five tasks: a -> b -> e is the critical path (7 units); c and d stand alone.
BOARD_PLAN = """
project: board
epics:
  - key: work
    name: Work
    tasks:
      - {key: a, title: Lay the foundation, estimate: 3}
      - {key: b, title: Build the walls, depends_on: [a], estimate: 2}
      - {key: c, title: Paint the fence, estimate: 1}
      - {key: d, title: Plant the garden, estimate: 1}
      - {key: e, title: Put on the roof, depends_on: [b], estimate: 2}
"""

T = TypeVar("T")


# ---------------------------------------------------------------- the browser


def _browser_problem() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set YOKEFLOW_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = _browser_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the dashboard's browser tests must run in CI: {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; its screenshot is saved when the test ends, and a script error fails the test."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: print(f"console {message.type}: {message.text}"))
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        try:
            if not page.is_closed():
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            context.close()
    assert not errors, f"the page raised: {errors}"


# ---------------------------------------------------------------- the server, agents, the store


@contextmanager
def http_server(
    url: str, *, port: int | None = None, repo: Path | None = None, require_token: bool = False
) -> Iterator[str]:
    """The real HTTP app (MCP, REST, events, dashboard) on loopback, on its own thread; its base URL."""
    app = build_http_app(
        url, Config(), host="127.0.0.1", repo=repo, sweep_interval_seconds=0.5, require_token=require_token
    )
    with serve_in_thread(app, port=port) as base:
        yield base


def run_async(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to its end on a thread of its own (Playwright's sync API owns this thread's loop)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(work())
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(120)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def board_keys(ids: dict[str, int]) -> dict[str, int]:
    """BOARD_PLAN's task ids by key (the import names them by plan path: epics[0].tasks[2])."""
    return {key: ids[f"epics[0].tasks[{n}]"] for n, key in enumerate("abcde")}


@pytest.fixture
def board(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, int]]]:
    """A served database holding BOARD_PLAN: (base URL, database URL, task ids by key)."""
    url = f"sqlite:///{tmp_path / 'coordinator.db'}"
    ids = run_async(lambda: import_plan(url, Config(), BOARD_PLAN))
    keys = board_keys(ids)
    with http_server(url) as base:
        yield base, url, keys


def register_worker(base: str, name: str, persona: str = "implementer") -> tuple[int, str]:
    async def work() -> tuple[int, str]:
        async with AgentClient(base, None, profile_path=OPERATOR_PATH) as operator:
            registered = await operator.call("register_agent", name=name, persona=persona)
        return int(registered["agent"]["id"]), str(registered["token"])

    return run_async(work)


def claim(base: str, token: str) -> dict[str, Any]:
    async def work() -> dict[str, Any]:
        async with AgentClient(base, token) as worker:
            return await worker.call("claim_task", wait_seconds=5)

    claimed = run_async(work)
    assert claimed["status"] == "claimed", claimed
    return claimed


def complete(base: str, token: str, task_id: int, lease_id: str) -> None:
    async def work() -> None:
        async with AgentClient(base, token) as worker:
            await worker.call("complete_task", task_id=task_id, lease_id=lease_id, summary="done in the test")

    run_async(work)


def stored(url: str, sql: str, *args: Any) -> dict[str, Any]:
    """One row read straight from the store."""

    async def work() -> dict[str, Any]:
        coord = await Coordinator.open(url)
        try:
            async with coord.store.transaction(write=False) as tx:
                row = await tx.fetchrow(sql, *args)
        finally:
            await coord.close()
        assert row is not None, sql
        return dict(row)

    return run_async(work)


def eventually(check: Callable[[], T], what: str, timeout: float = WAIT_MS / 1000) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# ---------------------------------------------------------------- page helpers


def open_board(page: Any, base: str) -> None:
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='true']")
    page.wait_for_selector("#connection.live")


def wait_until(page: Any, predicate: str, arg: Any = None, timeout: float = WAIT_MS / 1000) -> None:
    """Poll a JavaScript predicate (wait_for_function would need eval, which the page's CSP forbids)."""
    eventually(lambda: page.evaluate(predicate, arg), predicate, timeout)


def card(column: str, task_id: int) -> str:
    return f'#kanban [data-column="{column}"] .card[data-task-id="{task_id}"]'


def column_ids(page: Any, column: str) -> list[int]:
    ids = page.eval_on_selector_all(
        f'#kanban [data-column="{column}"] .card', "cards => cards.map(c => c.dataset.taskId)"
    )
    return [int(i) for i in ids]


# ---------------------------------------------------------------- serving (no browser needed)


def test_the_page_and_its_files_are_served_with_a_strict_policy(
    board: tuple[str, str, dict[str, int]],
) -> None:
    base, _, _ = board
    with httpx2.Client(base_url=base) as http:
        index = http.get("/")
        assert index.status_code == 200
        assert index.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in index.headers["content-security-policy"]
        assert '<script type="module" src="/static/app.js">' in index.text
        script = http.get("/static/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.headers["x-content-type-options"] == "nosniff"
        style = http.get("/static/style.css")
        assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
        assert http.get("/static/missing.js").status_code == 404
        assert http.get("/static/../dashboard_routes.py").status_code == 404
        assert http.get("/static/%2e%2e/dashboard_routes.py").status_code == 404
        # Nothing the page loads comes from elsewhere: no CDN, no build output.
        for text in (index.text, script.text, style.text):
            assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
            assert "https://" not in text


# ---------------------------------------------------------------- a running demo

# Every column each card is drawn in, recorded at each change of the board (to tell that cards
# moved while the agents worked, not only where they ended).
RECORD_COLUMNS = """
window.__seen = {};
const record = () => {
  for (const card of document.querySelectorAll('#kanban .column .card')) {
    const column = card.closest('.column').dataset.column;
    const seen = (window.__seen[card.dataset.taskId] ||= []);
    if (!seen.includes(column)) seen.push(column);
  }
};
new MutationObserver(record).observe(document, { childList: true, subtree: true });
"""


@pytest.mark.slow
def test_the_board_follows_a_running_demo_with_sim_agents(tmp_path: Path, page: Any) -> None:
    """`yokeflow demo`'s project (24 tasks, 4 sim agents, worktrees, the merge queue), watched live."""
    url = f"sqlite:///{tmp_path / 'coordinator.db'}"
    repo = tmp_path / "app"

    async def prepare() -> None:
        await make_repository(repo)
        await import_demo_plan(url, Config(), repo)

    run_async(prepare)
    page.add_init_script(RECORD_COLUMNS)
    with http_server(url, repo=repo) as base:
        open_board(page, base)
        wait_until(page, "() => document.querySelectorAll('#kanban .card').length === 24")
        assert len(column_ids(page, "ready")) > 0 and len(column_ids(page, "backlog")) > 0

        report: dict[str, LaunchReport] = {}

        async def team() -> None:
            settings = LaunchSettings(
                runner=SimRunner(SimOptions(time_scale=0.3)),
                personas=DEMO_PERSONAS,
                log_dir=tmp_path / "logs",
            )
            report["value"] = await launch(base, settings, asyncio.Event())

        agents = threading.Thread(target=lambda: run_async(team), name="demo-team")
        agents.start()
        try:
            page.wait_for_selector('#kanban [data-column="in_progress"] .card .agent', timeout=60_000)
            page.wait_for_selector("#lanes .lane .lane-task[data-task-id]")
            assert page.locator("#lanes .lane").count() >= len(DEMO_PERSONAS)
            page.screenshot(path=str(_artifact("demo-running.png")), full_page=True)
            wait_until(
                page,
                "() => document.querySelectorAll('#kanban [data-column=\"done\"] .card').length === 24",
                timeout=120,
            )
        finally:
            agents.join(180)
        assert not agents.is_alive(), "the sim agents did not finish"
        assert report["value"].ok, report["value"].status
        assert "24 of 24 done" in page.inner_text("#counts")
        seen: dict[str, list[str]] = page.evaluate("window.__seen")
        assert len(seen) == 24
        # Every card moved on the live board; claims and merges were drawn as they happened (a
        # task claimed and completed within one batch of events may skip a column, so: some).
        assert all(len(columns) >= 2 and "done" in columns for columns in seen.values()), seen
        assert sum("in_progress" in columns for columns in seen.values()) >= 1, seen
        assert sum("merging" in columns for columns in seen.values()) >= 1, seen

        page.click(".tabs [data-view='timeline']")
        page.wait_for_selector("#timeline-svg .actual")
        assert page.locator("#timeline-svg .pred").count() == 24
        assert page.locator("#timeline-svg .actual").count() == 24
        assert "Predicted makespan" in page.inner_text("#timeline-summary")
        page.screenshot(path=str(_artifact("demo-timeline.png")), full_page=True)

        page.click(".tabs [data-view='costs']")
        page.wait_for_selector("#cost-trend-svg .trend")
        assert page.inner_text("#cost-total").startswith("$")
        page.screenshot(path=str(_artifact("demo-costs.png")), full_page=True)

        page.click(".tabs [data-view='graph']")
        page.wait_for_selector("#graph-svg .node")
        assert page.locator("#graph-svg .node.st-done").count() == 24
        page.close()  # before the server stops: an open event stream would hold its shutdown


# ---------------------------------------------------------------- the board


def test_a_card_moves_from_ready_to_in_progress_to_done_as_an_agent_works(
    board: tuple[str, str, dict[str, int]], page: Any
) -> None:
    base, _, keys = board
    open_board(page, base)
    page.wait_for_selector(card("ready", keys["a"]))
    assert set(column_ids(page, "ready")) == {keys["a"], keys["c"], keys["d"]}
    assert set(column_ids(page, "backlog")) == {keys["b"], keys["e"]}

    agent_id, token = register_worker(base, "builder")
    page.wait_for_selector(f'#lanes .lane[data-agent-id="{agent_id}"]')
    claimed = claim(base, token)
    task_id = claimed["task"]["id"]
    assert task_id == keys["a"]  # the longest remaining path goes first

    page.wait_for_selector(card("in_progress", task_id))
    assert "builder" in page.wait_for_selector(f"{card('in_progress', task_id)} .agent").inner_text()
    page.wait_for_selector(f"{card('in_progress', task_id)} .lease")
    lane = page.wait_for_selector(
        f'#lanes .lane[data-agent-id="{agent_id}"] .lane-task[data-task-id="{task_id}"]'
    )
    assert "Lay the foundation" in lane.inner_text()

    complete(base, token, task_id, claimed["lease"]["lease_id"])
    page.wait_for_selector(card("done", task_id))
    # Its dependent became ready: the card follows without a reload.
    page.wait_for_selector(card("ready", keys["b"]))
    assert page.locator(card("in_progress", task_id)).count() == 0
    page.wait_for_selector("#counts:has-text('1 of 5 done')")


def test_dragging_a_card_onto_another_reprioritises_it_in_the_store(
    board: tuple[str, str, dict[str, int]], page: Any
) -> None:
    base, url, keys = board
    open_board(page, base)
    page.wait_for_selector(card("ready", keys["d"]))
    assert column_ids(page, "ready")[0] == keys["a"]
    before = stored(url, "SELECT priority FROM tasks WHERE id = $1", keys["a"])["priority"]

    page.drag_and_drop(card("ready", keys["d"]), card("ready", keys["a"]))

    eventually(
        lambda: stored(url, "SELECT priority FROM tasks WHERE id = $1", keys["d"])["priority"] == before - 1,
        "the dragged task's priority to change in the store",
    )
    wait_until(
        page,
        "first => document.querySelector('#kanban [data-column=\"ready\"] .card').dataset.taskId === first",
        str(keys["d"]),
    )
    assert column_ids(page, "ready")[:2] == [keys["d"], keys["a"]]


def test_dragging_parks_unparks_and_assigns(board: tuple[str, str, dict[str, int]], page: Any) -> None:
    base, url, keys = board
    agent_id, _ = register_worker(base, "gardener")
    open_board(page, base)
    page.wait_for_selector(card("ready", keys["c"]))

    page.drag_and_drop(card("ready", keys["c"]), "#parked")
    eventually(lambda: stored(url, "SELECT parked FROM tasks WHERE id = $1", keys["c"])["parked"], "c parked")
    page.wait_for_selector(f'#parked .card[data-task-id="{keys["c"]}"]')

    page.drag_and_drop(f'#parked .card[data-task-id="{keys["c"]}"]', '#kanban [data-column="ready"]')
    eventually(
        lambda: not stored(url, "SELECT parked FROM tasks WHERE id = $1", keys["c"])["parked"], "c unparked"
    )
    page.wait_for_selector(card("ready", keys["c"]))

    page.wait_for_selector(f'#lanes .lane[data-agent-id="{agent_id}"]')
    page.drag_and_drop(card("ready", keys["d"]), f'#lanes .lane[data-agent-id="{agent_id}"]')
    eventually(
        lambda: (
            stored(url, "SELECT assigned_agent FROM tasks WHERE id = $1", keys["d"])["assigned_agent"]
            == agent_id
        ),
        "d assigned to the gardener",
    )
    page.wait_for_selector(f"{card('ready', keys['d'])} .assigned")


def test_force_sequential_adds_a_hard_dependency(board: tuple[str, str, dict[str, int]], page: Any) -> None:
    base, url, keys = board
    open_board(page, base)
    page.check(f"{card('ready', keys['c'])} input.select")
    page.check(f"{card('ready', keys['d'])} input.select")
    button = page.locator("#sequence-button")
    assert button.inner_text() == f"Run #{keys['c']} before #{keys['d']}"
    button.click()
    page.wait_for_selector(f".toast.ok:has-text('#{keys['d']} waits for #{keys['c']}')")
    edge = eventually(
        lambda: stored(
            url,
            "SELECT COUNT(*) AS n, MIN(kind) AS kind FROM task_dependencies WHERE task_id = $1 AND depends_on_task_id = $2",
            keys["d"],
            keys["c"],
        ),
        "the dependency",
    )
    assert edge == {"n": 1, "kind": "hard"}
    page.wait_for_selector(card("backlog", keys["d"]))  # it now waits for c


def test_the_task_panel_shows_a_task_and_steers_it(board: tuple[str, str, dict[str, int]], page: Any) -> None:
    base, url, keys = board
    open_board(page, base)
    page.click(f"{card('backlog', keys['b'])} .title")
    panel = page.wait_for_selector("#task-panel:not([hidden]) h2:has-text('Build the walls')")
    assert panel is not None
    page.wait_for_selector(f"#panel-body li:has-text('#{keys['a']} Lay the foundation')")  # depends on
    page.wait_for_selector(f"#panel-body li:has-text('#{keys['e']} Put on the roof')")  # needed by
    page.fill("#panel-priority", "5")
    page.click("#panel-body button:has-text('Set')")
    eventually(
        lambda: stored(url, "SELECT priority FROM tasks WHERE id = $1", keys["b"])["priority"] == 5, "b at 5"
    )
    page.wait_for_selector(f"{card('backlog', keys['b'])}[data-priority='5']")
    page.click("#panel-body button:has-text('Cancel task')")
    eventually(
        lambda: stored(url, "SELECT status FROM tasks WHERE id = $1", keys["b"])["status"] == "cancelled",
        "b cancelled",
    )
    page.wait_for_selector(f"#kanban .card[data-task-id='{keys['b']}']", state="detached")
    page.keyboard.press("Escape")
    assert page.is_hidden("#task-panel")


def test_pause_and_resume_claiming(board: tuple[str, str, dict[str, int]], page: Any) -> None:
    base, url, _ = board
    open_board(page, base)
    page.click("#pause-button")
    eventually(lambda: stored(url, "SELECT status FROM projects")["status"] == "paused", "the project paused")
    page.wait_for_selector("#pause-button:has-text('Resume claiming')")
    page.click("#pause-button")
    eventually(
        lambda: stored(url, "SELECT status FROM projects")["status"] == "active", "the project resumed"
    )
    page.wait_for_selector("#pause-button:has-text('Pause claiming')")


def test_switching_projects_shows_the_other_board(board: tuple[str, str, dict[str, int]], page: Any) -> None:
    base, url, _ = board
    other = run_async(
        lambda: import_plan(
            url,
            Config(),
            "project: shed\nepics:\n  - {key: s, name: Shed, tasks: [{key: x, title: Build a shed}]}\n",
        )
    )
    open_board(page, base)
    page.wait_for_selector("#project-select option:has-text('shed')", state="attached")
    page.select_option("#project-select", label="shed")
    page.wait_for_selector(card("ready", next(iter(other.values()))))
    assert page.locator("#kanban .card").count() == 1
    assert "project=2" in page.url
    page.wait_for_selector("#connection.live")


# ---------------------------------------------------------------- the graph


def test_the_graph_highlights_the_critical_path_and_follows_status(
    board: tuple[str, str, dict[str, int]], page: Any
) -> None:
    base, _, keys = board
    with httpx2.Client(base_url=base) as http:
        projects = http.get("/api/projects").json()["projects"]
        graph = http.get(f"/api/projects/{projects[0]['id']}/graph").json()
    critical = graph["critical_path"]["tasks"]
    assert critical == [keys["a"], keys["b"], keys["e"]]

    open_board(page, base)
    page.click(".tabs [data-view='graph']")
    page.wait_for_selector("#graph-svg .node")
    highlighted = page.eval_on_selector_all(
        "#graph-svg .node.critical", "nodes => nodes.map(n => Number(n.dataset.taskId))"
    )
    assert sorted(highlighted) == sorted(critical)
    assert page.locator("#graph-svg .edge.critical").count() == len(critical) - 1
    assert page.locator("#graph-svg .node").count() == 5
    # Columns are batches: a, c, d first; then b; then e.
    xs = page.eval_on_selector_all(
        "#graph-svg .node",
        "nodes => Object.fromEntries(nodes.map(n => [n.dataset.taskId, n.transform.baseVal[0].matrix.e]))",
    )
    assert xs[str(keys["a"])] == xs[str(keys["c"])] < xs[str(keys["b"])] < xs[str(keys["e"])]

    _, token = register_worker(base, "builder")
    claim(base, token)
    page.wait_for_selector(f'#graph-svg .node.st-in_progress[data-task-id="{keys["a"]}"]')


# ---------------------------------------------------------------- expertise


def test_expertise_shows_entries_live_adds_edits_and_removes(
    board: tuple[str, str, dict[str, int]], page: Any
) -> None:
    base, url, _ = board
    page.goto(base + "/?view=expertise")
    page.wait_for_selector("#connection.live")
    page.click('#expertise-domains [data-domain="api"]')
    page.wait_for_selector("#expertise-detail h3:has-text('api')")
    assert page.locator("#expertise-entries").count() == 0

    async def learn() -> None:  # a learning recorded elsewhere (another process) while the page is open
        coord = await Coordinator.open(url)
        try:
            await coord.expertise.record_learning(
                OPERATOR, kind="gotcha", content="Timestamps are stored in UTC.", domain="api"
            )
        finally:
            await coord.close()

    run_async(learn)
    page.wait_for_selector("#expertise-entries td:has-text('Timestamps are stored in UTC.')")

    page.select_option("#entry-kind", "failure")
    page.fill("#entry-content", "Pagination broke on the last page.")
    page.fill("#entry-fix", "Count from the total, not the page size.")
    page.fill("#entry-files", "api/todos.py")
    page.click("#entry-save")
    page.wait_for_selector("#expertise-entries td:has-text('Pagination broke on the last page.')")
    row = stored(
        url, "SELECT version, content FROM expertise_files WHERE domain = $1", "api"
    )  # the store holds both entries, as version 2
    assert row["version"] == 2
    assert "Pagination broke" in row["content"] and "api/todos.py" in row["content"]
    # Entries and history are two reads; a refresh begun before the save may show them apart
    # for a moment, so wait until the live view settles on both versions.
    page.wait_for_function("document.querySelectorAll('#expertise-history li').length === 2")

    # Edit the first entry in place, then remove the second after confirming.
    page.click('#expertise-entries tr[data-entry="0"] .entry-edit-button')
    page.fill('#expertise-entries tr[data-entry="0"] .entry-edit', "Timestamps are stored in UTC, always.")
    page.click('#expertise-entries tr[data-entry="0"] .entry-edit-save')
    page.wait_for_selector("#expertise-entries td:has-text('Timestamps are stored in UTC, always.')")
    row = stored(url, "SELECT version, content FROM expertise_files WHERE domain = $1", "api")
    assert row["version"] == 3 and "UTC, always." in row["content"]
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('#expertise-entries tr[data-entry="1"] .entry-remove')
    page.wait_for_selector("#expertise-history li:has-text('failure removed')")
    row = stored(url, "SELECT version, content FROM expertise_files WHERE domain = $1", "api")
    assert row["version"] == 4 and "Pagination broke" not in row["content"]
    assert page.locator("#expertise-entries tr[data-entry]").count() == 1


# ---------------------------------------------------------------- tokens


def test_a_server_that_requires_tokens_asks_for_one_and_uses_it(page: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'coordinator.db'}"
    keys = board_keys(run_async(lambda: import_plan(url, Config(), BOARD_PLAN)))

    async def planner_token() -> str:
        coord = await Coordinator.open(url)
        try:
            return (await coord.agents.register(OPERATOR, persona="planner", role="planner")).token
        finally:
            await coord.close()

    token = run_async(planner_token)
    with http_server(url, require_token=True) as base:
        page.goto(base + "/")
        page.wait_for_selector("#settings-dialog[open] #token-why:has-text('bearer token')")
        page.fill("#token-input", token)
        page.click("#token-save")
        page.wait_for_selector("#connection.live")  # the stream takes the token in its query
        page.wait_for_selector(card("ready", keys["c"]))
        page.drag_and_drop(card("ready", keys["d"]), card("ready", keys["a"]))  # a write, as the planner
        eventually(
            lambda: stored(url, "SELECT priority FROM tasks WHERE id = $1", keys["d"])["priority"] == -1,
            "the planner's change",
        )
        actor = stored(url, "SELECT actor FROM events WHERE kind = 'task_priority_changed'")["actor"]
        assert actor.startswith("agent:") and "planner" in actor
        page.close()


# ---------------------------------------------------------------- disconnects


def test_the_page_shows_a_disconnect_and_catches_up_after_it(page: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'coordinator.db'}"
    ids = run_async(lambda: import_plan(url, Config(), BOARD_PLAN))
    task = board_keys(ids)["c"]
    port = free_port()
    with http_server(url, port=port) as base:
        open_board(page, base)
        page.wait_for_selector(card("ready", task))
        assert page.is_hidden("#disconnected-banner")

    page.wait_for_selector("#connection.down", timeout=20_000)
    assert "disconnected" in page.inner_text("#connection")
    assert page.is_visible("#disconnected-banner")
    page.screenshot(path=str(_artifact("disconnected.png")))

    async def steer_while_down() -> None:
        coord = await Coordinator.open(url)
        try:
            await coord.steering.steer(OPERATOR, task_id=task, priority=-7)
        finally:
            await coord.close()

    run_async(steer_while_down)
    with http_server(url, port=port):
        page.wait_for_selector("#connection.live", timeout=30_000)
        page.wait_for_selector(f'{card("ready", task)}[data-priority="-7"]')
        assert page.is_hidden("#disconnected-banner")


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
