// YokeFlow dashboard: one page over the REST API and the server-sent event stream of the same server.
// Hand-written, no build step, no third-party code. Every change arrives as an event and is drawn
// without reloading; steering actions (priority, park, assign, pause, force sequential, expertise)
// go through the REST API, and their effect comes back through the same event stream.

const TOKEN_KEY = "yokeflow.dashboard.token";
const SVG_NS = "http://www.w3.org/2000/svg";
const FEED_LENGTH = 60;
const COLUMN_LIMIT = 150;
const FAILED_STATES = new Set(["failed", "conflict", "rejected"]);
const FINISHED_STATES = new Set(["done", "cancelled"]);
const COLUMNS = [
  { key: "backlog", title: "Backlog", hint: "pending: waiting for dependencies or a retry" },
  { key: "ready", title: "Ready", hint: "pending: an agent may claim it now" },
  { key: "in_progress", title: "In progress", hint: "claimed, under a lease" },
  { key: "merging", title: "Merging", hint: "completed, in the merge queue" },
  { key: "done", title: "Done", hint: "merged or completed" },
  { key: "failed", title: "Failed / conflict", hint: "failed, conflict or rejected" },
];
// Every event kind the coordinator writes; the stream names each event by its kind.
const EVENT_KINDS = [
  "message",
  "project_created",
  "project_status",
  "project_paused",
  "project_resumed",
  "epic_created",
  "epic_completed",
  "epic_dependency_added",
  "task_created",
  "task_updated",
  "task_ready",
  "task_claimed",
  "task_branch_ready",
  "task_completed",
  "task_merged",
  "task_merge_conflict",
  "task_merge_rejected",
  "task_failed",
  "task_retry_scheduled",
  "task_released",
  "task_cancelled",
  "task_reopened",
  "task_parked",
  "task_unparked",
  "task_assigned",
  "task_priority_changed",
  "task_status_changed",
  "task_progress",
  "lease_heartbeat",
  "lease_expired",
  "lease_claimed",
  "dependency_added",
  "dependency_removed",
  "test_created",
  "test_result",
  "merge_queued",
  "merge_started",
  "merge_taken_over",
  "merge_blocked",
  "merge_conflict",
  "merge_merged",
  "merge_rejected",
  "merge_failed",
  "merge_retried",
  "merge_resolved",
  "plan_built",
  "plan_patched",
  "plan_imported",
  "batch_started",
  "batch_completed",
  "cost_recorded",
  "budget_warning",
  "budget_exhausted",
  "agent_registered",
  "agent_lost",
  "agent_stopped",
  "agent_started",
  "worktree_ready",
  "repository_recovered",
  "expertise_updated",
  "expertise_learned",
  "expertise_consolidated",
  "expertise_exported",
  "expertise_validated",
  "agent_updated",
  "task_resolved",
  "task_not_ready",
  "epic_status",
];

const S = {
  project: null, // the project's id
  projects: [],
  status: null, // GET /api/projects/{p}
  tasks: new Map(), // id -> task
  agents: [],
  worktrees: [],
  merges: [],
  graph: null,
  plan: null,
  costs: null,
  forecast: null,
  costTrend: [], // [{t, usd}] cumulative, from cost events
  expertise: null,
  expertiseDomain: null,
  events: [], // newest last, for the feed
  actual: new Map(), // task id -> {claimed, completed, merged} seconds, from events
  lastCommit: new Map(), // agent id -> {sha, task_id, title, at}, from task_completed events
  modelStats: null,
  selected: [], // task ids ticked for "force sequential", in the order ticked
  view: "board",
  skew: 0, // server clock - browser clock, seconds
  lastEventId: null,
  connected: false,
  dragging: null,
  panelTask: null,
  optional: {}, // endpoint name -> false when the server does not offer it
};

// ---------------------------------------------------------------- small helpers

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
const now = () => Date.now() / 1000 + S.skew;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

// Replace an element's children (nulls skipped, arrays flattened, as h() does).
function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A muted placeholder in `el`: `notOffered` when the server lacks `endpoint`, else `empty`.
function fillPlaceholder(el, tag, endpoint, notOffered, empty) {
  fill(el, h(tag, { class: "muted" }, S.optional[endpoint] === false ? notOffered : empty));
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function fmtAgo(at) {
  if (!at) return "never";
  const s = Math.max(0, now() - at);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function fmtCountdown(expires) {
  if (!expires) return "";
  const s = Math.round(expires - now());
  if (s < 0) return `expired ${-s} s ago`;
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

function fmtTime(at) {
  return at ? new Date(at * 1000).toLocaleTimeString() : "";
}

function fmtUsd(x) {
  if (x === null || x === undefined || Number.isNaN(Number(x))) return "—";
  const n = Number(x);
  return n >= 100 ? `$${n.toFixed(0)}` : `$${n.toFixed(2)}`;
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "—";
  const a = Math.abs(s);
  if (a < 120) return `${a.toFixed(a < 10 ? 1 : 0)} s`;
  if (a < 7200) return `${(a / 60).toFixed(1)} min`;
  return `${(a / 3600).toFixed(1)} h`;
}

function short(text, n) {
  text = String(text ?? "");
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

function statusLabel(status) {
  return String(status || "").replace(/_/g, " ");
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// ---------------------------------------------------------------- the REST API

class ApiError extends Error {
  constructor(code, message, fix, status, json = false) {
    super(message);
    this.code = code;
    this.fix = fix;
    this.status = status;
    this.json = json;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(
      "unreachable",
      "the server did not answer",
      "check that `yokeflow serve --http` is still running",
      0,
    );
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(
      (data && data.error) || response.status,
      (data && (data.message || data.detail)) || text || response.statusText,
      data && data.fix,
      response.status,
      Boolean(data && typeof data === "object" && data.error),
    );
  }
  return data;
}

const get = (path) => api("GET", path);
const projectPath = (suffix = "") => `/api/projects/${encodeURIComponent(S.project)}${suffix}`;

// An endpoint the server may not offer (older server, feature switched off): null when missing.
// A route the server does not have answers 404 without a JSON error body; it is not asked again.
async function optional(name, path) {
  if (S.optional[name] === false) return null;
  try {
    return await get(path);
  } catch (error) {
    if ((error.status === 404 && !error.json) || error.status === 501 || error.status === 405) {
      S.optional[name] = false;
      return null;
    }
    if (error.status === 404) return null;
    throw error;
  }
}

async function act(description, method, path, body) {
  try {
    const result = await api(method, path, body);
    toast(`${description}: done`, "ok");
    return result;
  } catch (error) {
    toast(`${description} failed: ${error.message}${error.fix ? ` — ${error.fix}` : ""}`, "error");
    if (error.status === 401) askForToken(`${description} needs a token: ${error.message}.`);
    return null;
  }
}

function toast(text, kind = "info") {
  (kind === "error" ? console.warn : console.info)(`yokeflow: ${text}`);
  const box = h("div", { class: ["toast", kind], role: kind === "error" ? "alert" : "status" }, text);
  $("#toasts").append(box);
  setTimeout(() => box.remove(), kind === "error" ? 9000 : 3500);
}

// Lists come back bare or wrapped ({tasks: [...]}, {agents: [...]}, {items: [...]}).
function listOf(data, ...keys) {
  if (!data) return [];
  if (Array.isArray(data)) return data;
  for (const key of [...keys, "items", "results", "data"]) if (Array.isArray(data[key])) return data[key];
  return [];
}

// ---------------------------------------------------------------- loading

async function loadProjects() {
  const data = await get("/api/projects");
  S.projects = listOf(data, "projects");
  const select = $("#project-select");
  fill(select, ...S.projects.map((p) => h("option", { value: p.id, text: p.name })));
  const wanted = new URLSearchParams(location.search).get("project");
  const chosen = S.projects.find((p) => String(p.id) === wanted || p.name === wanted) || S.projects[0];
  if (!chosen) {
    fill(
      $("#kanban"),
      h(
        "p",
        { class: "empty" },
        "No project yet. Import a plan with `yokeflow plan import FILE`, or run `yokeflow demo`.",
      ),
    );
    return false;
  }
  select.value = String(chosen.id);
  S.project = chosen.id;
  return true;
}

async function loadClock() {
  try {
    const health = await get("/api/health");
    if (health && typeof health.time === "number") S.skew = health.time - Date.now() / 1000;
  } catch {
    /* the clock stays the browser's */
  }
}

async function loadStatus() {
  S.status = await get(projectPath());
  renderHeader();
}

async function loadTasks() {
  const all = [];
  let offset = 0;
  for (let page = 0; page < 50; page++) {
    const data = await get(projectPath(`/tasks?limit=500&offset=${offset}`));
    const tasks = listOf(data, "tasks");
    all.push(...tasks);
    const next = data && !Array.isArray(data) ? data.next_offset : null;
    if (next === null || next === undefined || tasks.length === 0) break;
    offset = next;
  }
  S.tasks = new Map(all.map((t) => [t.id, t]));
  for (const t of all) noteActualFromTask(t);
}

async function loadTask(id) {
  try {
    const data = await get(`/api/tasks/${id}`);
    const task = data && data.task ? { ...data.task, ...flags(data) } : data;
    if (task && task.id !== undefined) {
      S.tasks.set(task.id, { ...(S.tasks.get(task.id) || {}), ...task });
      noteActualFromTask(task);
    }
    return data;
  } catch (error) {
    if (error.status === 404) S.tasks.delete(id);
    return null;
  }
}

// Fields a task detail carries beside the task itself that the board uses.
function flags(detail) {
  const out = {};
  for (const key of ["ready", "parked", "blocked_by", "agent", "agent_name", "worktree"]) {
    if (detail[key] !== undefined) out[key] = detail[key];
  }
  if (Array.isArray(detail.dependencies)) out.depends_on = detail.dependencies.map((d) => d.task_id);
  return out;
}

async function loadAgents() {
  S.agents = listOf(await optional("agents", projectPath("/agents")), "agents");
  const worktrees = await optional("worktrees", projectPath("/worktrees"));
  S.worktrees = listOf(worktrees, "worktrees");
}

async function loadMerges() {
  S.merges = listOf(await optional("merges", projectPath("/merges")), "merges");
  for (const m of S.merges) {
    if (m.status === "merged" && m.finished_at) noteActual(m.task_id, "merged", m.finished_at);
  }
}

async function loadGraph() {
  S.graph = await optional("graph", projectPath("/graph"));
}

async function loadPlan() {
  S.plan = await optional("plan", projectPath("/execution-plan"));
}

async function loadCosts() {
  const [summary, breakdown, forecast, models] = await Promise.all([
    optional("costs", projectPath("/costs")),
    optional("breakdown", projectPath("/costs/breakdown")),
    optional("forecast", projectPath("/costs/forecast")),
    optional("models", projectPath("/costs/models")),
  ]);
  S.costs = summary || breakdown ? { ...(summary || {}), ...(breakdown || {}) } : null;
  S.forecast = forecast;
  S.modelStats = models;
}

async function loadExpertise() {
  S.expertise = await optional("expertise", projectPath("/expertise"));
}

const HISTORY_PAGES = 40;

// The project's event log so far (the feed, the timeline's actual times, the cost trend), read
// before the state so that the stream, started after the last event read, misses nothing.
async function loadHistory() {
  if (S.lastEventId !== null || S.optional.history === false) return;
  let after = 0;
  for (let page = 0; page < HISTORY_PAGES; page++) {
    const data = await optional("history", projectPath(`/events?after_id=${after}&limit=1000`));
    if (!data) return;
    for (const message of listOf(data, "events")) record(normalize(message));
    after = data.next_after_id ?? after;
    S.lastEventId = after;
    if (!data.more) return;
  }
  // A very long log: the stream starts from now, the older events stay unread.
  S.lastEventId = null;
}

async function loadAll() {
  await loadHistory();
  await Promise.all([loadStatus(), loadTasks(), loadAgents(), loadGraph(), loadPlan()]);
  await Promise.all([loadMerges(), loadCosts()]);
  renderAll();
  loadExpertise()
    .then(() => S.view === "expertise" && renderExpertise())
    .catch(() => {});
}

// ---------------------------------------------------------------- live events

let source = null;
let retryTimer = null;
let retryDelay = 1000;
let healthTimer = null;

function connect() {
  if (source) source.close();
  clearTimeout(retryTimer);
  const params = new URLSearchParams({ project: String(S.project) });
  // A fresh EventSource cannot send Last-Event-ID itself; the query carries where we were.
  if (S.lastEventId !== null) params.set("last_event_id", String(S.lastEventId));
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) params.set("access_token", token);
  source = new EventSource(`/api/events?${params}`);
  source.addEventListener("open", () => {
    retryDelay = 1000;
    setConnected(true);
  });
  source.addEventListener("error", () => {
    setConnected(false);
    if (source.readyState === EventSource.CLOSED) {
      // The server answered with an error (or is starting): try again, a little later each time.
      retryTimer = setTimeout(() => reconnectAfterError(), retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    }
  });
  for (const kind of EVENT_KINDS) source.addEventListener(kind, onEvent);
}

async function reconnectAfterError() {
  try {
    await loadAll();
  } catch {
    /* still down */
  }
  connect();
}

function setConnected(ok) {
  const changed = S.connected !== ok;
  S.connected = ok;
  const badge = $("#connection");
  badge.className = `connection ${ok ? "live" : "down"}`;
  badge.textContent = ok ? "live" : "disconnected — reconnecting";
  $("#disconnected-banner").hidden = ok;
  document.body.classList.toggle("offline", !ok);
  if (changed && ok) refreshSoon({ status: true, agents: true, allTasks: true, merges: true });
}

// The health check notices a server that went away even when no stream error has come yet.
function watchHealth() {
  clearInterval(healthTimer);
  healthTimer = setInterval(async () => {
    try {
      const response = await fetch("/api/health", { cache: "no-store" });
      if (!response.ok && response.status !== 503) throw new Error("down");
      if (!S.connected && source && source.readyState === EventSource.OPEN) setConnected(true);
    } catch {
      setConnected(false);
    }
  }, 3000);
}

function parseEvent(message) {
  let data = {};
  try {
    data = JSON.parse(message.data);
  } catch {
    data = {};
  }
  const id = message.lastEventId !== "" && message.lastEventId !== undefined ? Number(message.lastEventId) : data.id;
  return normalize({
    ...data,
    id: id ?? data.id,
    kind: data.kind || (message.type !== "message" ? message.type : "event"),
  });
}

function normalize(data) {
  return {
    ...data,
    kind: data.kind || "event",
    before: data.before ?? data.before_status ?? null,
    after: data.after ?? data.after_status ?? null,
    payload: data.payload || {},
    created_at: data.created_at ?? data.time ?? now(),
  };
}

const pending = {
  tasks: new Set(),
  status: false,
  agents: false,
  merges: false,
  graph: false,
  plan: false,
  costs: false,
  expertise: false,
  allTasks: false,
};

// At most one refresh per FLUSH_MS however busy the stream is (a debounce would starve under load).
const FLUSH_MS = 100;
let flushTimer = null;
let flushing = false;

function scheduleFlush() {
  if (flushTimer === null) flushTimer = setTimeout(runFlush, FLUSH_MS);
}

async function runFlush() {
  if (flushing) {
    flushTimer = setTimeout(runFlush, FLUSH_MS); // the refresh under way ends first
    return;
  }
  flushTimer = null; // events from now on schedule the next refresh
  flushing = true;
  try {
    await flushNow();
  } finally {
    flushing = false;
  }
}

const flushNow = async () => {
  const work = { ...pending, tasks: new Set(pending.tasks) };
  pending.tasks.clear();
  for (const key of Object.keys(pending)) if (key !== "tasks") pending[key] = false;
  const jobs = [];
  if (work.allTasks || work.tasks.size > 25) jobs.push(loadTasks());
  else for (const id of work.tasks) jobs.push(loadTask(id));
  if (work.status) jobs.push(loadStatus());
  if (work.agents) jobs.push(loadAgents());
  if (work.merges) jobs.push(loadMerges());
  if (work.graph) jobs.push(loadGraph());
  if (work.plan) jobs.push(loadPlan());
  if (work.costs) jobs.push(loadCosts());
  if (work.expertise) jobs.push(loadExpertise());
  try {
    await Promise.all(jobs);
  } catch (error) {
    if (error.status !== 0) toast(`refresh failed: ${error.message}`, "error");
  }
  renderAll();
  if (S.panelTask !== null && work.tasks.has(S.panelTask) && !$("#task-panel").hidden) refreshPanel(S.panelTask);
  // An open domain follows its changes, unless someone is typing or editing an entry of it.
  const typing = $("#entry-content");
  if (
    work.expertise &&
    S.view === "expertise" &&
    S.expertiseDomain &&
    !(typing && (typing.value || document.activeElement === typing)) &&
    !$("#expertise-entries .entry-edit")
  ) {
    openDomain(S.expertiseDomain);
  }
};

function refreshSoon(what) {
  for (const [key, value] of Object.entries(what)) {
    if (key === "tasks") for (const id of value) pending.tasks.add(id);
    else if (value) pending[key] = true;
  }
  scheduleFlush();
}

// What an event adds to the page's memory: the feed, the actual times, the cost trend.
function record(event) {
  S.events.push(event);
  if (S.events.length > 500) S.events.splice(0, S.events.length - 500);
  const kind = event.kind;
  if (kind === "task_claimed" || kind === "lease_claimed") noteActual(event.task_id, "claimed", event.created_at, true);
  if (kind === "task_completed") {
    noteActual(event.task_id, "completed", event.created_at);
    const commit = event.payload.commit;
    if (commit && event.agent_id !== null && event.agent_id !== undefined) {
      const task = S.tasks.get(event.task_id);
      S.lastCommit.set(event.agent_id, {
        sha: commit,
        task_id: event.task_id,
        title: task ? task.title : `task ${event.task_id}`,
        at: event.created_at,
      });
    }
  }
  if (kind === "task_merged") noteActual(event.task_id, "merged", event.created_at);
  if (kind === "cost_recorded") {
    const usd = Number(event.payload.cost_usd || 0);
    const last = S.costTrend.length ? S.costTrend[S.costTrend.length - 1].usd : 0;
    S.costTrend.push({ t: event.created_at, usd: last + usd });
  }
}

function onEvent(message) {
  const event = parseEvent(message);
  if (event.id !== undefined && event.id !== null && !Number.isNaN(event.id)) {
    if (S.lastEventId !== null && event.id <= S.lastEventId) return; // seen already
    S.lastEventId = event.id;
  }
  if (event.project_id !== undefined && event.project_id !== null && String(event.project_id) !== String(S.project))
    return;
  record(event);
  const kind = event.kind;
  const what = { status: true, tasks: [] };

  if (event.task_id !== null && event.task_id !== undefined) {
    const task = S.tasks.get(event.task_id);
    if (task && event.after) {
      // Draw the new state at once; the task's full record follows.
      task.status = event.after;
      updateGraphNode(task.id, event.after);
    }
    if (!task && kind === "task_created") what.allTasks = true;
    what.tasks.push(event.task_id);
    // A finished task makes its dependents ready: the board works that out from the graph.
  }
  if (/^(agent_|lease_|worktree_|task_claimed|task_released|task_completed|task_assigned|task_branch)/.test(kind))
    what.agents = true;
  if (/merge/.test(kind) || kind === "task_completed") what.merges = true;
  if (/^(plan_|dependency_|epic_|task_created|batch_)/.test(kind)) {
    what.graph = true;
    what.plan = true;
    what.allTasks = true;
  }
  if (kind === "cost_recorded" || kind.startsWith("budget_")) what.costs = true;
  if (kind.startsWith("expertise")) what.expertise = true;
  renderSoon();
  refreshSoon(what);
}

// Draw what the events said at the next frame; the records they touched are read after.
let frameRequested = false;
function renderSoon() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => {
    frameRequested = false;
    renderAll();
  });
}

function noteActual(taskId, key, at, restart = false) {
  if (taskId === null || taskId === undefined || !at) return;
  const entry = S.actual.get(taskId) || {};
  if (restart && key === "claimed") {
    entry.claimed = at;
    delete entry.completed;
    delete entry.merged;
  } else if (!entry[key] || at > entry[key]) entry[key] = at;
  S.actual.set(taskId, entry);
}

function noteActualFromTask(task) {
  const entry = S.actual.get(task.id) || {};
  if (task.started_at && !entry.claimed) entry.claimed = task.started_at;
  if (task.completed_at && task.status === "done" && !entry.completed && !entry.merged)
    entry.completed = task.completed_at;
  if (entry.claimed || entry.completed) S.actual.set(task.id, entry);
}

// ---------------------------------------------------------------- the header

function renderHeader() {
  const status = S.status;
  if (!status) return;
  // Counted from the tasks the board holds (live from the events), else from the status.
  let counts = status.tasks || status.counts || {};
  if (S.tasks.size) {
    counts = {};
    for (const t of S.tasks.values()) counts[t.status] = (counts[t.status] || 0) + 1;
  }
  const total = S.tasks.size || (status.total_tasks ?? Object.values(counts).reduce((a, b) => a + b, 0));
  const done = counts.done || 0;
  const counted = total - (counts.cancelled || 0);
  const pct = counted ? (100 * done) / counted : 0;
  fill(
    $("#counts"),
    h("span", { class: "progress" }, h("span", { class: "progress-bar", dataset: { pct: String(Math.round(pct)) } })),
    h("span", { class: "count-text" }, `${done} of ${total} done (${Math.round(pct)}%)`),
    ...["in_progress", "merging", "failed", "conflict"]
      .filter((k) => counts[k])
      .map((k) => h("span", { class: `chip st-${k}` }, `${counts[k]} ${statusLabel(k)}`)),
  );
  const bar = $(".progress-bar");
  if (bar) bar.style.width = `${Math.min(100, pct)}%`;
  const button = $("#pause-button");
  button.disabled = false;
  const paused = isPaused();
  button.textContent = paused ? "Resume claiming" : "Pause claiming";
  button.classList.toggle("paused", paused);
  document.body.classList.toggle("project-paused", paused);
}

function isPaused() {
  const status = S.status || {};
  const project = status.project || {};
  return Boolean(status.paused ?? project.paused ?? (project.status === "paused" || (project.metadata || {}).paused));
}

// ---------------------------------------------------------------- the kanban board

function hardBlockers(task) {
  if (Array.isArray(task.blocked_by)) return task.blocked_by;
  const before = [];
  if (S.graph && Array.isArray(S.graph.edges)) {
    for (const e of S.graph.edges) if (e.after === task.id && (e.kind || "hard") === "hard") before.push(e.before);
    for (const e of S.graph.epic_edges || []) {
      if (e.after === task.epic_id && (e.kind || "hard") === "hard") {
        for (const t of S.tasks.values()) if (t.epic_id === e.before) before.push(t.id);
      }
    }
  } else {
    before.push(...(task.depends_on || []));
  }
  return before.filter((id) => {
    const t = S.tasks.get(id);
    return t && !FINISHED_STATES.has(t.status);
  });
}

function isParked(task) {
  return Boolean(task.parked ?? (task.metadata || {}).parked);
}

function isReady(task) {
  if (task.status !== "pending" || isParked(task)) return false;
  if (typeof task.ready === "boolean") return task.ready && (task.available_at ?? 0) <= now() + 0.5;
  if ((task.available_at ?? 0) > now()) return false;
  return hardBlockers(task).length === 0;
}

function columnOf(task) {
  if (task.status === "cancelled") return null;
  if (isParked(task) && task.status === "pending") return "parked";
  if (task.status === "pending") return isReady(task) ? "ready" : "backlog";
  if (FAILED_STATES.has(task.status)) return "failed";
  return task.status;
}

function claimOrder(a, b) {
  return (a.priority ?? 0) - (b.priority ?? 0) || (b.remaining_path ?? 0) - (a.remaining_path ?? 0) || a.id - b.id;
}

function criticalSet() {
  const path = S.graph && (S.graph.critical_path || {}).tasks;
  return new Set(path || []);
}

function agentById(id) {
  return S.agents.find((a) => a.id === id);
}

function agentOf(task) {
  if (task.lease_owner === null || task.lease_owner === undefined) return null;
  return agentById(task.lease_owner) || { id: task.lease_owner, name: `agent ${task.lease_owner}` };
}

function renderBoard() {
  if (S.dragging !== null) return; // redrawn when the drag ends
  const groups = Object.fromEntries(COLUMNS.map((c) => [c.key, []]));
  groups.parked = [];
  let cancelled = 0;
  for (const task of S.tasks.values()) {
    const column = columnOf(task);
    if (column === null) cancelled++;
    else (groups[column] || groups.backlog).push(task);
  }
  for (const key of Object.keys(groups)) groups[key].sort(claimOrder);
  groups.done.sort((a, b) => (b.completed_at ?? 0) - (a.completed_at ?? 0) || b.id - a.id);
  groups.failed.sort((a, b) => (b.updated_at ?? 0) - (a.updated_at ?? 0));
  const critical = criticalSet();
  ensureColumns();
  for (const column of COLUMNS) {
    const section = $(`#kanban [data-column="${column.key}"]`);
    const tasks = groups[column.key];
    const shown = tasks.slice(0, COLUMN_LIMIT);
    $(".column-count", section).textContent = String(tasks.length);
    syncChildren(
      $(".cards", section),
      shown.map((t) => cardFor(t, critical)),
    );
    const notes = [];
    if (tasks.length > shown.length) notes.push(`+${tasks.length - shown.length} more`);
    if (column.key === "done" && cancelled) notes.push(`${cancelled} cancelled (hidden)`);
    const more = $(".more", section);
    more.textContent = notes.join(" · ");
    more.hidden = notes.length === 0;
  }
  syncChildren(
    $("#parked .parked-cards"),
    groups.parked.map((t) => cardFor(t, critical)),
  );
  for (const id of cardCache.keys()) if (!S.tasks.has(id)) cardCache.delete(id);
  $("#parked").classList.toggle("has-cards", groups.parked.length > 0);
  renderSelection();
}

// The board is redrawn in place: a card whose content did not change keeps its element, and a
// column whose cards did not change is not touched, so a press or a drag is never cut short.
const cardCache = new Map(); // task id -> {sig, el}

function ensureColumns() {
  const kanban = $("#kanban");
  if (kanban.querySelectorAll(":scope > .column").length === COLUMNS.length) return;
  fill(
    kanban,
    ...COLUMNS.map((column) =>
      h(
        "section",
        { class: ["column", `col-${column.key}`, "dropzone"], dataset: { column: column.key, drop: "column" } },
        h("h3", { title: column.hint }, column.title, " ", h("span", { class: "column-count" }, "0")),
        h("div", { class: "cards" }),
        h("p", { class: "muted more", hidden: true }),
      ),
    ),
  );
}

function syncChildren(container, nodes) {
  const current = container.children;
  if (current.length === nodes.length && nodes.every((node, i) => current[i] === node)) return;
  fill(container, ...nodes);
}

function cardFor(task, critical) {
  const agent = agentOf(task);
  const assigned =
    task.assigned_agent !== null && task.assigned_agent !== undefined ? agentById(task.assigned_agent) : null;
  const sig = JSON.stringify([
    task.status,
    task.title,
    task.priority,
    task.persona,
    agent && agent.name,
    agent && agent.worktree,
    task.assigned_agent,
    assigned && assigned.name,
    task.branch,
    task.attempts,
    task.max_attempts,
    task.lease_expires_at,
    (task.available_at ?? 0) > now() ? task.available_at : null,
    isParked(task),
    critical.has(task.id),
    S.selected.includes(task.id),
  ]);
  const cached = cardCache.get(task.id);
  if (cached && cached.sig === sig) return cached.el;
  const el = card(task, critical);
  cardCache.set(task.id, { sig, el });
  return el;
}

function card(task, critical) {
  const agent = agentOf(task);
  const branch = task.branch || (agent && agent.worktree ? `worktree ${baseName(agent.worktree)}` : null);
  const selected = S.selected.includes(task.id);
  return h(
    "article",
    {
      class: ["card", `st-${task.status}`, critical.has(task.id) && "critical", selected && "selected"],
      draggable: "true",
      tabindex: "0",
      dataset: { taskId: String(task.id), status: task.status, priority: String(task.priority ?? 0) },
      ondragstart: onDragStart,
      ondragend: onDragEnd,
      onclick: (e) => {
        if (e.target.closest("input")) return;
        openTask(task.id);
      },
      onkeydown: (e) => e.key === "Enter" && openTask(task.id),
    },
    h(
      "header",
      {},
      h("input", {
        type: "checkbox",
        class: "select",
        title: "Select for force sequential",
        "aria-label": `select task ${task.id}`,
        checked: selected,
        onchange: (e) => toggleSelected(task.id, e.target.checked),
      }),
      h("span", { class: "tid" }, `#${task.id}`),
      h("span", { class: "prio", title: "priority (lower runs first)" }, `P${task.priority ?? 0}`),
      critical.has(task.id) ? h("span", { class: "crit", title: "on the critical path" }, "critical") : null,
    ),
    h("div", { class: "title" }, task.title),
    h(
      "div",
      { class: "meta" },
      task.persona ? h("span", { class: "persona" }, task.persona) : null,
      agent ? h("span", { class: "agent", title: "agent holding the lease" }, agent.name) : null,
      task.assigned_agent !== null && task.assigned_agent !== undefined && (!agent || agent.id !== task.assigned_agent)
        ? h(
            "span",
            { class: "assigned", title: "only this agent may claim it" },
            `→ ${(agentById(task.assigned_agent) || { name: `agent ${task.assigned_agent}` }).name}`,
          )
        : null,
      branch ? h("span", { class: "branch", title: "branch / worktree" }, branch) : null,
      (task.attempts ?? 0) > 1 || ((task.attempts ?? 0) > 0 && !FINISHED_STATES.has(task.status))
        ? h("span", { class: "attempts", title: "attempts" }, `try ${task.attempts}/${task.max_attempts ?? "?"}`)
        : null,
      task.status === "in_progress" && task.lease_expires_at
        ? h(
            "span",
            { class: "lease", dataset: { expires: String(task.lease_expires_at) }, title: "lease expires in" },
            fmtCountdown(task.lease_expires_at),
          )
        : null,
      task.status === "pending" && !isParked(task) && (task.available_at ?? 0) > now()
        ? h(
            "span",
            { class: "lease", dataset: { expires: String(task.available_at) }, title: "retry after" },
            `retry ${fmtCountdown(task.available_at)}`,
          )
        : null,
    ),
  );
}

function baseName(path) {
  return String(path).split(/[\\/]/).filter(Boolean).pop() || path;
}

// -- drag and drop

function onDragStart(e) {
  const el = e.currentTarget;
  S.dragging = Number(el.dataset.taskId);
  e.dataTransfer.setData("text/plain", String(S.dragging));
  e.dataTransfer.effectAllowed = "move";
  el.classList.add("dragging");
  document.body.classList.add("is-dragging");
}

function onDragEnd() {
  S.dragging = null;
  document.body.classList.remove("is-dragging");
  $$(".drop-hover").forEach((el) => el.classList.remove("drop-hover"));
  renderBoard();
  renderLanes();
}

function dropTarget(e) {
  return e.target.closest(".card, .lane, .dropzone");
}

function onDragOver(e) {
  const target = dropTarget(e);
  if (!target) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = "move";
  $$(".drop-hover").forEach((el) => el !== target && el.classList.remove("drop-hover"));
  target.classList.add("drop-hover");
}

async function onDrop(e) {
  const target = dropTarget(e);
  if (!target) return;
  e.preventDefault();
  const id = Number(e.dataTransfer.getData("text/plain") || S.dragging);
  S.dragging = null;
  document.body.classList.remove("is-dragging");
  $$(".drop-hover").forEach((el) => el.classList.remove("drop-hover"));
  const task = S.tasks.get(id);
  if (!task) return;
  if (target.classList.contains("card")) {
    const other = S.tasks.get(Number(target.dataset.taskId));
    if (other && other.id !== id) await placeBefore(task, other);
  } else if (target.classList.contains("lane")) {
    const agentId = Number(target.dataset.agentId);
    if (!Number.isNaN(agentId))
      await act(`assign #${id} to ${target.dataset.agentName}`, "POST", `/api/tasks/${id}/assign`, {
        agent_id: agentId,
      });
  } else if (target.dataset.drop === "parked") {
    if (!isParked(task)) await setParked(task, true);
  } else if (target.dataset.drop === "column") {
    await dropOnColumn(task, target.dataset.column);
  }
  renderBoard();
}

async function placeBefore(task, other) {
  const priority = (other.priority ?? 0) - 1;
  if (isParked(task) && !isParked(other)) await setParked(task, false);
  await setPriority(task, priority, `run #${task.id} before #${other.id}`);
}

async function dropOnColumn(task, column) {
  if (isParked(task)) {
    await setParked(task, false);
    return;
  }
  if (column !== columnOf(task)) {
    toast(
      `#${task.id} is ${statusLabel(task.status)}; a card changes column when its task changes state. Drop it on a card to run it before that one.`,
      "info",
    );
    return;
  }
  const last = [...S.tasks.values()]
    .filter((t) => columnOf(t) === column && t.id !== task.id)
    .sort(claimOrder)
    .pop();
  if (last && claimOrder(task, last) > 0) return; // already last
  if (last) await setPriority(task, (last.priority ?? 0) + 1, `move #${task.id} to the end`);
}

async function setPriority(task, priority, description) {
  const result = await act(description || `priority of #${task.id}`, "PATCH", `/api/tasks/${task.id}`, { priority });
  if (result) {
    task.priority = priority;
    refreshSoon({ tasks: [task.id] });
  }
  return result;
}

async function setParked(task, parked) {
  const result = await act(parked ? `park #${task.id}` : `unpark #${task.id}`, "PATCH", `/api/tasks/${task.id}`, {
    parked,
  });
  if (result) {
    task.parked = parked;
    refreshSoon({ tasks: [task.id], status: true });
  }
  return result;
}

// -- force sequential

function toggleSelected(id, on) {
  S.selected = S.selected.filter((x) => x !== id);
  if (on) S.selected.push(id);
  if (S.selected.length > 2) S.selected = S.selected.slice(-2);
  renderBoard();
}

function renderSelection() {
  const [first, then] = S.selected.map((id) => S.tasks.get(id));
  const button = $("#sequence-button");
  button.disabled = !(first && then);
  $("#clear-selection").disabled = S.selected.length === 0;
  const info = $("#selection-info");
  if (first && then) {
    button.textContent = `Run #${first.id} before #${then.id}`;
    info.textContent = `#${then.id} “${short(then.title, 30)}” will wait for #${first.id} “${short(first.title, 30)}” (a hard dependency).`;
  } else {
    button.textContent = "Force sequential";
    info.textContent = first
      ? `#${first.id} selected: tick the task that must wait for it.`
      : "Tick two cards to force them to run one after the other.";
  }
}

async function forceSequential() {
  const [first, then] = S.selected;
  if (first === undefined || then === undefined) return;
  const result = await act(`#${then} waits for #${first}`, "POST", "/api/dependencies", {
    task_id: then,
    depends_on: first,
    kind: "hard",
  });
  if (result) {
    S.selected = [];
    refreshSoon({ graph: true, plan: true, allTasks: true });
  }
}

// ---------------------------------------------------------------- swimlanes

function renderLanes() {
  if (S.dragging !== null) return;
  const lanes = $("#lanes");
  const byAgent = new Map();
  for (const task of S.tasks.values()) {
    if (task.status === "in_progress" && task.lease_owner !== null && task.lease_owner !== undefined) {
      if (!byAgent.has(task.lease_owner)) byAgent.set(task.lease_owner, []);
      byAgent.get(task.lease_owner).push(task);
    }
  }
  const order = { active: 0, lost: 1, stopped: 2 };
  const agents = [...S.agents]
    .filter((a) => (a.role || "worker") !== "observer")
    .sort((a, b) => (order[a.status] ?? 3) - (order[b.status] ?? 3) || a.id - b.id);
  const usedWorktrees = new Set();
  const rows = agents.map((agent) => {
    const current = byAgent.get(agent.id) || (agent.leased_task_ids || []).map((id) => S.tasks.get(id)).filter(Boolean);
    const worktree = worktreeOf(agent);
    if (worktree) usedWorktrees.add(worktree);
    const task = current[0];
    const branch = (task && task.branch) || (worktree && (worktree.branch || worktree.current_branch)) || null;
    const commit =
      lastCommitOf(agent) || (worktree && (worktree.head || worktree.last_commit || worktree.commit)) || null;
    return h(
      "div",
      { class: ["lane", `agent-${agent.status}`], dataset: { agentId: String(agent.id), agentName: agent.name } },
      h(
        "div",
        { class: "lane-head" },
        h("span", { class: `dot ${agent.status}`, title: agent.status }),
        h("strong", {}, agent.name),
        h("span", { class: "muted" }, ` ${agent.persona || ""}`),
        h(
          "span",
          { class: "ago muted", dataset: { at: String(agent.last_heartbeat_at || "") }, title: "last heartbeat" },
          `♥ ${fmtAgo(agent.last_heartbeat_at)}`,
        ),
      ),
      h(
        "div",
        { class: "lane-body" },
        task
          ? h(
              "div",
              {
                class: ["lane-task", `st-${task.status}`],
                dataset: { taskId: String(task.id) },
                onclick: () => openTask(task.id),
              },
              h("span", { class: "tid" }, `#${task.id} `),
              short(task.title, 60),
              task.lease_expires_at
                ? h(
                    "span",
                    { class: "lease", dataset: { expires: String(task.lease_expires_at) } },
                    fmtCountdown(task.lease_expires_at),
                  )
                : null,
            )
          : h(
              "div",
              { class: "lane-task idle muted" },
              agent.status === "active" ? "idle — drop a card here to assign it" : agent.status,
            ),
        h(
          "div",
          { class: "lane-meta muted" },
          agent.worktree || (worktree && worktree.path)
            ? h(
                "span",
                { title: agent.worktree || worktree.path },
                `worktree ${baseName(agent.worktree || worktree.path)}`,
              )
            : null,
          branch ? h("span", {}, `branch ${branch}`) : null,
          commit
            ? h(
                "span",
                { class: "commit" },
                `commit ${String(typeof commit === "object" ? commit.sha || commit.id : commit).slice(0, 10)}${typeof commit === "object" && commit.message ? ` ${short(commit.message, 40)}` : ""}`,
              )
            : null,
        ),
      ),
    );
  });
  for (const wt of S.worktrees) {
    if (usedWorktrees.has(wt)) continue;
    rows.push(
      h(
        "div",
        { class: ["lane", "worktree-only"] },
        h(
          "div",
          { class: "lane-head" },
          h("span", { class: "dot stopped" }),
          h("strong", {}, baseName(wt.path || wt.name || "worktree")),
          h("span", { class: "muted" }, " worktree"),
        ),
        h(
          "div",
          { class: "lane-body muted" },
          [
            wt.status && `${wt.status}`,
            wt.branch && `branch ${wt.branch}`,
            (wt.head || wt.last_commit || wt.base_commit) &&
              `base ${String(wt.head || wt.last_commit || wt.base_commit).slice(0, 10)}`,
            "no agent",
          ]
            .filter(Boolean)
            .join(" · "),
        ),
      ),
    );
  }
  fill(
    lanes,
    ...(rows.length ? rows : [h("p", { class: "muted" }, "No agents yet. Start some with `yokeflow launch`.")]),
  );
}

function worktreeOf(agent) {
  return S.worktrees.find(
    (w) =>
      (w.agent && w.agent.id === agent.id) ||
      (w.agent_id !== undefined && w.agent_id === agent.id) ||
      (agent.worktree && (w.path === agent.worktree || w.name === agent.worktree)),
  );
}

// The agent's last commit: from its latest task_completed event (the log keeps who completed what).
function lastCommitOf(agent) {
  const last = S.lastCommit.get(agent.id);
  return last ? { sha: last.sha, message: last.title } : null;
}

// ---------------------------------------------------------------- the event feed

function renderFeed() {
  const items = S.events.slice(-FEED_LENGTH).reverse();
  fill(
    $("#event-feed"),
    ...items.map((e) => {
      const task = e.task_id !== null && e.task_id !== undefined ? S.tasks.get(e.task_id) : null;
      return h(
        "li",
        { class: `ev-${e.kind}` },
        h("time", {}, fmtTime(e.created_at)),
        h("span", { class: "kind" }, e.kind.replace(/_/g, " ")),
        e.task_id !== null && e.task_id !== undefined
          ? h("span", { class: "tid" }, `#${e.task_id}${task ? ` ${short(task.title, 40)}` : ""}`)
          : null,
        e.before || e.after
          ? h("span", { class: "muted" }, `${statusLabel(e.before || "")} → ${statusLabel(e.after || "")}`)
          : null,
        e.actor ? h("span", { class: "muted actor" }, e.actor) : null,
      );
    }),
  );
}

// ---------------------------------------------------------------- the dependency graph

const NODE_W = 176;
const NODE_H = 46;
const GAP_X = 64;
const GAP_Y = 14;
const PAD = 24;

function graphLayout() {
  const graph = S.graph;
  if (!graph || !Array.isArray(graph.nodes)) return null;
  const nodes = new Map(graph.nodes.map((n) => [n.id, n]));
  let batches = Array.isArray(graph.batches) && graph.batches.length ? graph.batches : null;
  if (!batches) {
    const byBatch = new Map();
    for (const n of graph.nodes) {
      const b = n.batch ?? 1;
      if (!byBatch.has(b)) byBatch.set(b, []);
      byBatch.get(b).push(n.id);
    }
    batches = [...byBatch.keys()].sort((a, b) => a - b).map((b) => byBatch.get(b));
  }
  const critical = criticalSet();
  const pos = new Map();
  batches.forEach((batch, column) => {
    // The critical path first in each column, then by epic and id, so it runs along the top.
    const ordered = [...batch].sort(
      (a, b) =>
        critical.has(b) - critical.has(a) ||
        ((nodes.get(a) || {}).epic ?? 0) - ((nodes.get(b) || {}).epic ?? 0) ||
        a - b,
    );
    ordered.forEach((id, row) =>
      pos.set(id, { x: PAD + column * (NODE_W + GAP_X), y: PAD + 22 + row * (NODE_H + GAP_Y) }),
    );
  });
  const height = PAD * 2 + 22 + Math.max(1, ...batches.map((b) => b.length)) * (NODE_H + GAP_Y);
  const width = PAD * 2 + batches.length * (NODE_W + GAP_X) - GAP_X;
  return { nodes, batches, pos, width, height, critical };
}

function renderGraph() {
  const box = $("#graph");
  const layout = graphLayout();
  if (!layout) {
    fillPlaceholder(box, "p", "graph", "This server does not offer the graph endpoint.", "No dependency graph yet.");
    return;
  }
  const { nodes, batches, pos, width, height, critical } = layout;
  const path = S.graph.critical_path || {};
  $("#graph-summary").textContent =
    `${nodes.size} tasks in ${batches.length} batches · critical path: ${(path.tasks || []).length} tasks, ${Number(path.length || 0).toFixed(1)} estimate units`;
  const edges = (S.graph.edges || []).map((e) => {
    const a = pos.get(e.before);
    const b = pos.get(e.after);
    if (!a || !b) return null;
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2;
    const x2 = b.x;
    const y2 = b.y + NODE_H / 2;
    const bend = Math.max(30, (x2 - x1) / 2);
    const onPath = e.critical ?? (critical.has(e.before) && critical.has(e.after));
    return svg("path", {
      d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
      class: ["edge", e.kind === "soft" ? "soft" : "hard", onPath && "critical"],
      "marker-end": onPath ? "url(#arrow-critical)" : "url(#arrow)",
      dataset: { before: String(e.before), after: String(e.after) },
    });
  });
  const heads = batches.map((_, i) =>
    svg("text", { x: PAD + i * (NODE_W + GAP_X), y: PAD, class: "batch-label" }, `Batch ${i + 1}`),
  );
  const nodeEls = [...pos.entries()].map(([id, p]) => {
    const node = nodes.get(id) || { id };
    const task = S.tasks.get(id);
    const status = (task && task.status) || node.status || "pending";
    const onPath = critical.has(id);
    return svg(
      "g",
      {
        class: ["node", `st-${status}`, onPath && "critical"],
        transform: `translate(${p.x},${p.y})`,
        dataset: { taskId: String(id), status },
        tabindex: "0",
        onclick: () => openTask(id),
      },
      svg(
        "title",
        {},
        `#${id} ${node.title || (task && task.title) || ""} — ${statusLabel(status)}${onPath ? " — critical path" : ""}`,
      ),
      svg("rect", { width: NODE_W, height: NODE_H, rx: 6, ry: 6 }),
      svg(
        "text",
        { x: 8, y: 18, class: "node-title" },
        short(`#${id} ${node.title || (task && task.title) || ""}`, 26),
      ),
      svg(
        "text",
        { x: 8, y: 36, class: "node-meta" },
        `${statusLabel(status)} · est ${node.estimate ?? (task && task.estimate) ?? "?"}`,
      ),
    );
  });
  const defs = svg(
    "defs",
    {},
    svg(
      "marker",
      {
        id: "arrow",
        viewBox: "0 0 10 10",
        refX: 9,
        refY: 5,
        markerWidth: 7,
        markerHeight: 7,
        orient: "auto-start-reverse",
      },
      svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }),
    ),
    svg(
      "marker",
      {
        id: "arrow-critical",
        viewBox: "0 0 10 10",
        refX: 9,
        refY: 5,
        markerWidth: 7,
        markerHeight: 7,
        orient: "auto-start-reverse",
      },
      svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow critical" }),
    ),
  );
  fill(
    box,
    svg(
      "svg",
      {
        id: "graph-svg",
        width,
        height,
        viewBox: `0 0 ${width} ${height}`,
        role: "img",
        "aria-label": "dependency graph",
      },
      defs,
      heads,
      edges,
      nodeEls,
    ),
  );
}

function updateGraphNode(id, status) {
  const node = document.querySelector(`#graph-svg .node[data-task-id="${id}"]`);
  if (!node) return;
  node.classList.forEach((c) => c.startsWith("st-") && node.classList.remove(c));
  node.classList.add(`st-${status}`);
  node.dataset.status = status;
}

// ---------------------------------------------------------------- the timeline

// The predicted schedule: the server's when it gives one, else agents pulling ready tasks,
// longest remaining path first (as coordinator/scheduling.py predicts the makespan).
function predictedSchedule() {
  const plan = S.plan || {};
  const given = listOf(
    plan.schedule || plan.predicted_schedule || (plan.prediction && plan.prediction.schedule),
    "tasks",
    "entries",
  );
  if (given.length) {
    return given.map((e) => ({
      id: e.task_id ?? e.id,
      start: Number(e.start ?? e.predicted_start ?? 0),
      finish: Number(e.finish ?? e.end ?? e.predicted_finish ?? 0),
      agent: e.agent ?? e.slot,
    }));
  }
  const graph = S.graph;
  if (!graph || !Array.isArray(graph.nodes)) return [];
  const agents = Math.max(
    1,
    Number(
      (plan.makespan || {}).agents ||
        plan.max_concurrency ||
        S.agents.filter((a) => (a.role || "worker") === "worker").length ||
        1,
    ),
  );
  const est = new Map(graph.nodes.map((n) => [n.id, Number(n.estimate ?? 1)]));
  const rem = new Map(graph.nodes.map((n) => [n.id, Number(n.remaining ?? n.estimate ?? 1)]));
  const succ = new Map(graph.nodes.map((n) => [n.id, []]));
  const waiting = new Map(graph.nodes.map((n) => [n.id, 0]));
  for (const e of graph.edges || []) {
    if ((e.kind || "hard") !== "hard" || !succ.has(e.before) || !waiting.has(e.after)) continue;
    succ.get(e.before).push(e.after);
    waiting.set(e.after, waiting.get(e.after) + 1);
  }
  let ready = [...waiting.entries()].filter(([, n]) => n === 0).map(([id]) => id);
  const byRemaining = (a, b) => rem.get(b) - rem.get(a) || a - b;
  const running = []; // {id, finish, slot}
  const free = Array.from({ length: agents }, (_, i) => i);
  const out = [];
  let t = 0;
  let guard = 0;
  while ((ready.length || running.length) && guard++ < 100000) {
    ready.sort(byRemaining);
    while (ready.length && free.length) {
      const id = ready.shift();
      const slot = free.shift();
      running.push({ id, finish: t + est.get(id), slot });
      out.push({ id, start: t, finish: t + est.get(id), agent: slot });
    }
    running.sort((a, b) => a.finish - b.finish);
    t = running[0].finish;
    while (running.length && running[0].finish === t) {
      const done = running.shift();
      free.push(done.slot);
      free.sort((a, b) => a - b);
      for (const s of succ.get(done.id)) {
        waiting.set(s, waiting.get(s) - 1);
        if (waiting.get(s) === 0) ready.push(s);
      }
    }
  }
  return out;
}

// Seconds per estimate unit, from the tasks that finished (median of actual / estimate).
function secondsPerUnit() {
  const ratios = [];
  for (const [id, a] of S.actual) {
    const task = S.tasks.get(id);
    const end = a.completed ?? a.merged;
    if (task && a.claimed && end && end > a.claimed && (task.estimate ?? 0) > 0)
      ratios.push((end - a.claimed) / task.estimate);
  }
  if (!ratios.length) return null;
  ratios.sort((a, b) => a - b);
  return ratios[Math.floor(ratios.length / 2)];
}

function renderTimeline() {
  const box = $("#timeline");
  const schedule = predictedSchedule();
  if (!schedule.length) {
    fill(box, h("p", { class: "muted" }, "No execution plan yet: build one with `yokeflow plan build`."));
    $("#timeline-summary").textContent = "";
    return;
  }
  const claims = [...S.actual.values()].map((a) => a.claimed).filter(Boolean);
  const origin = claims.length ? Math.min(...claims) : null;
  const scale = secondsPerUnit();
  const predictedEnd = Math.max(...schedule.map((s) => s.finish));
  const unitsAxis = origin === null || scale === null;
  const toX0 = (seconds) => seconds; // seconds (or units) from the origin
  const nowRel = origin !== null ? now() - origin : 0;
  let actualEnd = 0;
  for (const a of S.actual.values()) {
    const end = a.merged ?? a.completed ?? (a.claimed ? now() : null);
    if (a.claimed && end && origin !== null) actualEnd = Math.max(actualEnd, end - origin);
  }
  const span = Math.max(unitsAxis ? predictedEnd : predictedEnd * scale, unitsAxis ? 0 : actualEnd, 1e-6);
  const LABEL_W = 230;
  const ROW_H = 20;
  const plotW = Math.max(480, Math.min(1400, window.innerWidth - LABEL_W - 80));
  const x = (v) => LABEL_W + (toX0(v) / span) * plotW;
  const rows = [...schedule].sort((a, b) => a.start - b.start || a.id - b.id);
  const height = 34 + rows.length * ROW_H + 10;
  const els = [];
  const ticks = 6;
  for (let i = 0; i <= ticks; i++) {
    const v = (span * i) / ticks;
    els.push(svg("line", { x1: x(v), x2: x(v), y1: 20, y2: height - 6, class: "grid" }));
    els.push(svg("text", { x: x(v), y: 14, class: "tick" }, unitsAxis ? `${v.toFixed(1)} u` : fmtSeconds(v)));
  }
  let ahead = 0;
  let behind = 0;
  rows.forEach((entry, i) => {
    const y = 26 + i * ROW_H;
    const task = S.tasks.get(entry.id) || {};
    const k = unitsAxis ? 1 : scale;
    els.push(
      svg(
        "text",
        { x: 6, y: y + 12, class: ["row-label", `st-${task.status || "pending"}`] },
        short(`#${entry.id} ${task.title || ""}`, 34),
      ),
    );
    els.push(
      svg(
        "rect",
        {
          x: x(entry.start * k),
          y: y + 1,
          width: Math.max(2, x(entry.finish * k) - x(entry.start * k)),
          height: ROW_H - 4,
          class: "pred",
          dataset: { taskId: String(entry.id) },
        },
        svg(
          "title",
          {},
          `predicted ${unitsAxis ? `${entry.start}–${entry.finish} units` : `${fmtSeconds(entry.start * k)}–${fmtSeconds(entry.finish * k)}`}`,
        ),
      ),
    );
    const a = S.actual.get(entry.id);
    if (a && a.claimed && origin !== null && !unitsAxis) {
      const start = a.claimed - origin;
      const endAbs = a.completed ?? a.merged ?? (task.status === "in_progress" ? now() : null);
      if (endAbs) {
        const end = endAbs - origin;
        els.push(
          svg(
            "rect",
            {
              x: x(start),
              y: y + 5,
              width: Math.max(2, x(end) - x(start)),
              height: ROW_H - 12,
              class: ["actual", `st-${task.status || "pending"}`],
              dataset: { taskId: String(entry.id) },
            },
            svg(
              "title",
              {},
              `claimed at ${fmtSeconds(start)}, ${a.completed ? `completed at ${fmtSeconds(end)}` : "running"}`,
            ),
          ),
        );
        if (a.completed || a.merged) {
          const delta = (a.merged ?? a.completed) - origin - entry.finish * k;
          if (delta < 0) ahead++;
          else behind++;
        }
      }
      if (a.merged)
        els.push(
          svg(
            "path",
            { d: diamond(x(a.merged - origin), y + ROW_H / 2 - 1, 5), class: "merge-mark" },
            svg("title", {}, `merged at ${fmtSeconds(a.merged - origin)}`),
          ),
        );
    }
  });
  if (origin !== null && !unitsAxis && nowRel <= span * 1.02)
    els.push(svg("line", { x1: x(nowRel), x2: x(nowRel), y1: 18, y2: height - 4, class: "now" }));
  fill(
    box,
    svg("svg", { id: "timeline-svg", width: LABEL_W + plotW + 20, height, role: "img", "aria-label": "timeline" }, els),
  );
  const summary = $("#timeline-summary");
  if (unitsAxis) {
    summary.textContent = `Predicted makespan ${predictedEnd.toFixed(1)} estimate units with ${new Set(schedule.map((s) => s.agent)).size} agents. Actual times appear once tasks have been claimed and finished.`;
  } else {
    const predicted = predictedEnd * scale;
    const open = [...S.tasks.values()].filter((t) => !FINISHED_STATES.has(t.status)).length;
    let verdict;
    if (open === 0) {
      const late = actualEnd - predicted;
      verdict = `finished in ${fmtSeconds(actualEnd)}: ${fmtSeconds(Math.abs(late))} ${late > 0 ? "behind" : "ahead of"} the prediction`;
    } else {
      const doneCount = [...S.tasks.values()].filter((t) => t.status === "done").length;
      const predictedDone = schedule.filter((e) => e.finish * scale <= nowRel).length;
      verdict = `${fmtSeconds(nowRel)} in, ${doneCount} done where ${predictedDone} were predicted: ${doneCount > predictedDone ? "ahead" : doneCount === predictedDone ? "on time" : "behind"}`;
    }
    summary.textContent = `Predicted makespan ${fmtSeconds(predicted)} (${fmtSeconds(scale)} per estimate unit, measured on finished tasks); ${verdict}. Finished tasks: ${ahead} earlier than predicted, ${behind} later.`;
  }
}

function diamond(cx, cy, r) {
  return `M${cx},${cy - r} L${cx + r},${cy} L${cx},${cy + r} L${cx - r},${cy} z`;
}

// ---------------------------------------------------------------- costs

function costTotal() {
  const c = S.costs || {};
  return Number(c.total_usd ?? c.spent_usd ?? c.total ?? 0);
}

function renderCosts() {
  const c = S.costs;
  if (!c) {
    fillPlaceholder($("#cost-cards"), "p", "costs", "This server does not offer the costs endpoint.", "No costs yet.");
    for (const id of ["#cost-models", "#cost-personas", "#cost-trend", "#cost-forecast"]) fill($(id));
    return;
  }
  const total = costTotal();
  const budget = c.budget_limit_usd ?? c.budget_usd ?? (c.budget && c.budget.limit_usd) ?? null;
  const fraction = budget ? total / budget : null;
  const f = S.forecast || {};
  const projected = f.projected_total_usd ?? f.forecast_usd ?? f.total_usd ?? f.estimate_usd ?? null;
  const bar = budget
    ? h(
        "div",
        { class: "budget-bar", title: `${Math.round(100 * fraction)}% of the budget` },
        h("div", { class: ["budget-fill", fraction >= 1 ? "over" : fraction >= 0.8 ? "warn" : ""] }),
        projected ? h("div", { class: "budget-forecast", title: `forecast ${fmtUsd(projected)}` }) : null,
      )
    : h(
        "p",
        { class: "muted" },
        "No budget is set (cost.budget_limit_usd in .yokeflow.yaml), so there is nothing to spend against.",
      );
  fill(
    $("#cost-cards"),
    h(
      "div",
      { class: "cost-card" },
      h("div", { class: "big", id: "cost-total" }, fmtUsd(total)),
      h("div", { class: "muted" }, "spent"),
    ),
    h(
      "div",
      { class: "cost-card" },
      h("div", { class: "big" }, budget ? fmtUsd(budget) : "none"),
      h("div", { class: "muted" }, "budget"),
    ),
    h(
      "div",
      { class: "cost-card" },
      h("div", { class: "big" }, fraction !== null ? `${Math.round(100 * fraction)}%` : "—"),
      h("div", { class: "muted" }, "of the budget used"),
    ),
    h(
      "div",
      { class: "cost-card" },
      h("div", { class: "big" }, projected !== null ? fmtUsd(projected) : "—"),
      h("div", { class: "muted" }, "forecast at the end"),
    ),
    h("div", { class: "cost-card wide" }, bar),
  );
  const budgetFill = $(".budget-fill");
  if (budgetFill) budgetFill.style.width = `${Math.min(100, 100 * (fraction ?? 0))}%`;
  const mark = $(".budget-forecast");
  if (mark) mark.style.left = `${Math.min(100, (100 * projected) / budget)}%`;
  fill($("#cost-models"), costBars(listOf(c.by_model, "lines")));
  fill($("#cost-personas"), costBars(byPersona(c)));
  renderTrend(total, budget);
  renderForecast(f);
}

function byPersona(c) {
  if (Array.isArray(c.by_persona)) return c.by_persona;
  const sums = new Map();
  for (const line of c.by_agent || []) {
    const agent = S.agents.find((a) => String(a.id) === String(line.key));
    const persona = agent ? agent.persona : line.key === "none" ? "operator / none" : `agent ${line.key}`;
    const prev = sums.get(persona) || { key: persona, cost_usd: 0, operations: 0 };
    prev.cost_usd += Number(line.cost_usd || 0);
    prev.operations += Number(line.operations || 0);
    sums.set(persona, prev);
  }
  return [...sums.values()].sort((a, b) => b.cost_usd - a.cost_usd);
}

function costBars(lines) {
  if (!lines.length) return h("p", { class: "muted" }, "nothing recorded");
  const max = Math.max(...lines.map((l) => Number(l.cost_usd || 0)), 1e-9);
  return h(
    "table",
    { class: "bars" },
    lines.map((l) => {
      const barFill = h("div", { class: "bar-fill" });
      barFill.style.width = `${(100 * Number(l.cost_usd || 0)) / max}%`;
      return h(
        "tr",
        {},
        h("th", {}, l.key ?? l.model ?? l.persona),
        h("td", { class: "bar-cell" }, h("div", { class: "bar" }, barFill)),
        h("td", { class: "num" }, fmtUsd(l.cost_usd)),
        h("td", { class: "num muted" }, l.operations !== undefined ? `${l.operations} ops` : ""),
      );
    }),
  );
}

function renderTrend(total, budget) {
  const box = $("#cost-trend");
  const points = [...S.costTrend].filter((p) => p.t && p.usd !== undefined);
  if (points.length < 2) {
    fill(
      box,
      h(
        "p",
        { class: "muted" },
        points.length
          ? `${fmtUsd(total)} so far; the trend appears as costs are recorded.`
          : "The trend appears as costs are recorded.",
      ),
    );
    return;
  }
  const W = 720;
  const H = 180;
  const P = 36;
  const t0 = points[0].t;
  const t1 = Math.max(points[points.length - 1].t, t0 + 1);
  const top = Math.max(...points.map((p) => p.usd), budget || 0, 1e-9);
  const X = (t) => P + ((t - t0) / (t1 - t0)) * (W - 2 * P);
  const Y = (v) => H - P + 10 - (v / top) * (H - P - 10);
  const d = points.map((p, i) => `${i ? "L" : "M"}${X(p.t).toFixed(1)},${Y(p.usd).toFixed(1)}`).join(" ");
  fill(
    box,
    svg(
      "svg",
      { id: "cost-trend-svg", width: W, height: H, role: "img", "aria-label": "spend over time" },
      svg("line", { x1: P, x2: W - P, y1: Y(0), y2: Y(0), class: "axis" }),
      budget ? svg("line", { x1: P, x2: W - P, y1: Y(budget), y2: Y(budget), class: "budget-line" }) : null,
      budget ? svg("text", { x: W - P, y: Y(budget) - 4, class: "tick end" }, `budget ${fmtUsd(budget)}`) : null,
      svg("path", { d, class: "trend" }),
      svg("text", { x: P, y: H - 4, class: "tick" }, fmtTime(t0)),
      svg("text", { x: W - P, y: H - 4, class: "tick end" }, fmtTime(t1)),
      svg("text", { x: P, y: 12, class: "tick" }, fmtUsd(top)),
    ),
  );
}

function renderForecast(f) {
  const box = $("#cost-forecast");
  if (!S.forecast) {
    fillPlaceholder(box, "p", "forecast", "This server does not offer a cost forecast.", "No forecast yet.");
    return;
  }
  const bands = Array.isArray(f.bands) ? f.bands : [];
  const plain = Object.fromEntries(
    Object.entries(f).filter(([k, v]) => k !== "bands" && (typeof v !== "object" || v === null)),
  );
  const stats = listOf(S.modelStats, "records");
  fill(
    box,
    h(
      "p",
      {},
      f.forecast_usd === null || f.forecast_usd === undefined
        ? "No forecast yet: it needs finished tasks with recorded costs."
        : `The ${f.remaining_tasks ?? "remaining"} remaining tasks should cost ${fmtUsd(f.forecast_usd)}, for ${fmtUsd(f.projected_total_usd)} in all${f.budget_limit_usd ? ` (${Math.round(100 * (f.projected_budget_fraction ?? 0))}% of the budget${f.over_budget ? ": over budget" : ""})` : ""}.`,
    ),
    keyValues(plain),
    bands.length
      ? h(
          "table",
          { class: "grid-table" },
          h(
            "tr",
            {},
            [
              "size band",
              "remaining tasks",
              "remaining estimate",
              "method",
              "measured tasks",
              "unit cost",
              "forecast",
            ].map((t) => h("th", {}, t)),
          ),
          bands.map((b) =>
            h(
              "tr",
              {},
              h("td", {}, b.band),
              h("td", { class: "num" }, b.remaining_tasks),
              h("td", { class: "num" }, b.remaining_estimate),
              h("td", {}, String(b.method || "").replace(/_/g, " ")),
              h("td", { class: "num" }, b.sample_tasks),
              h("td", { class: "num" }, fmtUsd(b.unit_cost_usd)),
              h("td", { class: "num" }, fmtUsd(b.forecast_usd)),
            ),
          ),
        )
      : null,
    stats.length
      ? [
          h("h3", {}, "Models by results"),
          h(
            "table",
            { class: "grid-table" },
            h(
              "tr",
              {},
              ["domain", "size band", "model", "tasks", "success rate", "cost per task"].map((t) => h("th", {}, t)),
            ),
            stats.map((r) =>
              h(
                "tr",
                { class: r.counts === false ? "muted" : "" },
                h("td", {}, r.domain),
                h("td", {}, r.band),
                h("td", {}, r.model),
                h("td", { class: "num" }, r.tasks),
                h("td", { class: "num" }, `${Math.round(100 * (r.success_rate ?? 0))}%`),
                h("td", { class: "num" }, fmtUsd(r.cost_per_task)),
              ),
            ),
          ),
        ]
      : null,
  );
}

function keyValues(obj) {
  return h(
    "dl",
    { class: "kv" },
    Object.entries(obj).flatMap(([k, v]) => [
      h("dt", {}, k.replace(/_/g, " ")),
      h(
        "dd",
        {},
        v === null
          ? "—"
          : typeof v === "object"
            ? JSON.stringify(v)
            : /usd/.test(k)
              ? fmtUsd(v)
              : typeof v === "number"
                ? String(Math.round(v * 1000) / 1000)
                : String(v),
      ),
    ]),
  );
}

// ---------------------------------------------------------------- expertise

const ENTRY_KINDS = ["pattern", "technique", "failure", "core_file", "gotcha"];

function domainsOf(data) {
  const list = listOf(data, "domains", "expertise");
  return list.map((d) => (typeof d === "string" ? { domain: d } : { ...d, domain: d.domain ?? d.name }));
}

function renderExpertise() {
  const list = $("#expertise-domains");
  if (!S.expertise) {
    fillPlaceholder(list, "li", "expertise", "This server does not offer expertise.", "No expertise yet.");
    return;
  }
  const domains = domainsOf(S.expertise);
  fill(
    list,
    ...(domains.length
      ? domains.map((d) =>
          h(
            "li",
            {},
            h(
              "button",
              {
                type: "button",
                class: ["domain", d.domain === S.expertiseDomain && "active"],
                dataset: { domain: d.domain },
                onclick: () => openDomain(d.domain),
              },
              h("strong", {}, d.domain),
              h(
                "span",
                { class: "muted domain-figures" },
                [
                  d.version !== undefined ? `v${d.version}` : null,
                  d.entries !== undefined ? `${Array.isArray(d.entries) ? d.entries.length : d.entries} entries` : null,
                  d.confidence !== undefined ? `confidence ${Math.round(100 * d.confidence)}%` : null,
                  d.configured === false ? "not configured" : null,
                ]
                  .filter(Boolean)
                  .join(" · "),
              ),
            ),
          ),
        )
      : [h("li", { class: "muted" }, "No domains: list them under learning.domains in .yokeflow.yaml.")]),
  );
}

async function openDomain(domain) {
  S.expertiseDomain = domain;
  renderExpertise();
  const box = $("#expertise-detail");
  fill(box, h("p", { class: "muted" }, "loading…"));
  const base = projectPath(`/expertise/${encodeURIComponent(domain)}`);
  let view;
  let history = [];
  try {
    [view, history] = await Promise.all([
      get(base),
      optional("expertise-history", `${base}/history?limit=50`).then((d) => listOf(d, "history")),
    ]);
  } catch (error) {
    fill(box, h("p", { class: "error" }, `${error.message}${error.fix ? ` — ${error.fix}` : ""}`));
    return;
  }
  if (S.expertiseDomain !== domain) return;
  const entries = listOf(view.entries);
  fill(
    box,
    h("h3", {}, domain, h("span", { class: "muted" }, ` version ${view.version ?? 0}`)),
    view.description ? h("p", {}, view.description) : null,
    keyValues(
      Object.fromEntries(
        Object.entries({
          entries: entries.length,
          lines: view.line_count,
          confidence: view.confidence !== undefined ? `${Math.round(100 * view.confidence)}%` : undefined,
          "times read": view.usage_count,
          "tasks completed": view.completions,
          updated: view.updated_at ? `${fmtTime(view.updated_at)} (${fmtAgo(view.updated_at)})` : undefined,
          validated: view.validated_at ? fmtAgo(view.validated_at) : undefined,
        }).filter(([, v]) => v !== undefined && v !== null),
      ),
    ),
    entries.length
      ? h(
          "table",
          { class: "grid-table entries", id: "expertise-entries" },
          h(
            "tr",
            {},
            ["kind", "learning", "fix", "files", "seen", "last seen", "tasks", ""].map((t) => h("th", {}, t)),
          ),
          entries.map((e, i) =>
            h(
              "tr",
              { class: `kind-${e.kind}`, "data-entry": i },
              h("td", {}, h("span", { class: "chip" }, String(e.kind || "").replace(/_/g, " "))),
              h("td", { class: "entry-content" }, e.content),
              h("td", {}, e.fix || ""),
              h("td", { class: "mono" }, (e.files || []).join(", ")),
              h("td", { class: "num" }, `${e.count ?? 1}×`),
              h("td", {}, e.last_seen ? fmtAgo(e.last_seen) : ""),
              h("td", {}, (e.sources || []).map((id) => `#${id}`).join(" ")),
              h("td", { class: "entry-actions" }, entryButtons(domain, base, view.version ?? 0, e, i)),
            ),
          ),
        )
      : h("p", { class: "muted" }, "Nothing learned in this domain yet."),
    entryForm(domain, base),
    h(
      "div",
      { class: "row" },
      h(
        "button",
        {
          type: "button",
          class: "ghost",
          id: "expertise-validate",
          onclick: () => domainAction(domain, `${base}/validate`, `validate ${domain}`),
        },
        "Validate (prune stale entries)",
      ),
      " ",
      h(
        "button",
        {
          type: "button",
          class: "ghost",
          id: "expertise-improve",
          onclick: () => domainAction(domain, `${base}/improve`, `import hand edits of ${domain}`),
        },
        "Import hand edits of expertise.yaml",
      ),
    ),
    h("h4", {}, "History"),
    history.length
      ? h(
          "ol",
          { class: "history", id: "expertise-history" },
          history.map((v) =>
            h(
              "li",
              {},
              h("strong", {}, `v${v.version}`),
              ` ${fmtTime(v.created_at)} · ${String(v.change_type || "").replace(/_/g, " ")} · ${v.summary || ""}`,
              v.diff && Object.keys(v.diff).length
                ? h("details", {}, h("summary", {}, "diff"), h("pre", {}, JSON.stringify(v.diff, null, 2)))
                : null,
            ),
          ),
        )
      : h("p", { class: "muted" }, "no changes yet"),
  );
}

function entryForm(domain, base) {
  const kind = h(
    "select",
    { id: "entry-kind", "aria-label": "kind" },
    ENTRY_KINDS.map((k) => h("option", { value: k }, k.replace(/_/g, " "))),
  );
  const content = h("textarea", {
    id: "entry-content",
    rows: 3,
    placeholder: "What was learned (for a core file: its path)",
  });
  const fix = h("input", { id: "entry-fix", type: "text", placeholder: "For a failure: what fixed it" });
  const files = h("input", { id: "entry-files", type: "text", placeholder: "Files, comma-separated" });
  const save = h("button", { type: "button", class: "action", id: "entry-save" }, "Add entry");
  save.addEventListener("click", async () => {
    if (!content.value.trim()) {
      toast("write the learning first", "error");
      return;
    }
    const body = {
      kind: kind.value,
      content: content.value.trim(),
      files: files.value
        .split(",")
        .map((f) => f.trim())
        .filter(Boolean),
    };
    if (fix.value.trim()) body.fix = fix.value.trim();
    const result = await act(`add to ${domain}`, "POST", `${base}/entries`, body);
    if (result) {
      await loadExpertise();
      openDomain(domain);
    }
  });
  return h(
    "fieldset",
    { class: "entry-form" },
    h("legend", {}, "Add an entry"),
    h("div", { class: "entry-row" }, kind, fix, files),
    content,
    h("div", { class: "row" }, save),
  );
}

// Edit (inline, then PATCH) and Remove (confirm, then DELETE) of entry `i`; `version` guards
// against changing an entry that moved since the domain was shown.
function entryButtons(domain, base, version, entry, i) {
  const path = `${base}/entries/${i}`;
  const edit = h("button", { type: "button", class: "ghost entry-edit-button" }, "Edit");
  const remove = h("button", { type: "button", class: "ghost entry-remove" }, "Remove");
  const done = async (result) => {
    if (!result) return;
    await loadExpertise();
    openDomain(domain);
  };
  edit.addEventListener("click", () => {
    const row = edit.closest("tr");
    const content = h("textarea", { class: "entry-edit", rows: 2, "aria-label": "learning" });
    content.value = entry.content;
    const fix =
      entry.kind === "failure"
        ? h("input", { class: "entry-edit-fix", type: "text", "aria-label": "fix" })
        : null;
    if (fix) fix.value = entry.fix || "";
    const save = h("button", { type: "button", class: "action entry-edit-save" }, "Save");
    const cancel = h("button", { type: "button", class: "ghost" }, "Cancel");
    save.addEventListener("click", async () => {
      if (!content.value.trim()) {
        toast("the learning cannot be empty; remove the entry instead", "error");
        return;
      }
      const body = { content: content.value.trim(), version };
      if (fix) body.fix = fix.value.trim();
      await done(await act(`edit entry of ${domain}`, "PATCH", path, body));
    });
    cancel.addEventListener("click", () => openDomain(domain));
    fill(row.querySelector(".entry-content"), content);
    if (fix) fill(row.children[2], fix);
    fill(row.querySelector(".entry-actions"), save, " ", cancel);
    content.focus();
  });
  remove.addEventListener("click", async () => {
    const what = String(entry.kind).replace(/_/g, " ");
    if (!window.confirm(`Remove this ${what} from ${domain}?\n\n${entry.content}`)) return;
    await done(await act(`remove entry of ${domain}`, "DELETE", `${path}?version=${version}`));
  });
  return [edit, " ", remove];
}

async function domainAction(domain, path, description) {
  const result = await act(description, "POST", path, {});
  if (result) {
    await loadExpertise();
    openDomain(domain);
  }
}

// ---------------------------------------------------------------- the task panel

async function openTask(id) {
  S.panelTask = id;
  const panel = $("#task-panel");
  panel.hidden = false;
  fill($("#panel-body"), h("p", { class: "muted" }, "loading…"));
  const detail = await loadTask(id);
  if (S.panelTask !== id) return;
  renderPanel(detail);
}

// The open panel follows its task's changes (kept as it is while its priority is being typed).
async function refreshPanel(id) {
  if (
    document.activeElement &&
    document.activeElement.closest &&
    document.activeElement.closest("#task-panel input, #task-panel select")
  )
    return;
  const detail = await loadTask(id);
  if (S.panelTask === id && detail) renderPanel(detail);
}

function renderPanel(detail) {
  const id = S.panelTask;
  const task = S.tasks.get(id);
  if (!task) {
    fill($("#panel-body"), h("p", { class: "error" }, `task #${id} was not found`));
    return;
  }
  const priority = h("input", { type: "number", id: "panel-priority", value: String(task.priority ?? 0), step: "1" });
  const assign = h(
    "select",
    { id: "panel-assign" },
    h("option", { value: "" }, "assign to…"),
    S.agents
      .filter((a) => a.status === "active" && (a.role || "worker") === "worker")
      .map((a) => h("option", { value: String(a.id) }, `${a.name} (${a.persona})`)),
  );
  const events = detail ? listOf(detail.recent_events || detail.events, "events") : [];
  const deps = detail ? listOf(detail.dependencies) : [];
  const dependents = detail ? listOf(detail.dependents) : [];
  const tests = detail ? listOf(detail.tests) : [];
  const statusButtons = [];
  if (FAILED_STATES.has(task.status) || task.status === "cancelled")
    statusButtons.push(["pending", "Retry (back to pending)"]);
  if (!FINISHED_STATES.has(task.status)) statusButtons.push(["cancelled", "Cancel task"]);
  fill(
    $("#panel-body"),
    h("h2", {}, `#${task.id} ${task.title}`),
    h(
      "p",
      {},
      h("span", { class: `chip st-${task.status}` }, statusLabel(task.status)),
      isParked(task) ? h("span", { class: "chip parked-chip" }, "parked") : null,
      criticalSet().has(task.id) ? h("span", { class: "chip critical-chip" }, "critical path") : null,
    ),
    task.description ? h("p", { class: "desc" }, task.description) : null,
    keyValues(
      Object.fromEntries(
        Object.entries({
          persona: task.persona,
          domain: task.domain,
          estimate: task.estimate,
          batch: task.batch_number,
          attempts: task.attempts !== undefined ? `${task.attempts} of ${task.max_attempts}` : undefined,
          agent: (agentOf(task) || {}).name,
          branch: task.branch,
          commit: task.commit_sha,
          "last error": task.last_error,
        }).filter(([, v]) => v !== null && v !== undefined && v !== ""),
      ),
    ),
    h(
      "div",
      { class: "panel-actions" },
      h("label", {}, "Priority ", priority),
      h("button", { type: "button", class: "action", onclick: () => setPriority(task, Number(priority.value)) }, "Set"),
      h(
        "button",
        { type: "button", class: "action", id: "panel-park", onclick: () => setParked(task, !isParked(task)) },
        isParked(task) ? "Unpark" : "Park",
      ),
      assign,
      h(
        "button",
        {
          type: "button",
          class: "action",
          onclick: () =>
            assign.value &&
            act(`assign #${task.id}`, "POST", `/api/tasks/${task.id}/assign`, { agent_id: Number(assign.value) }),
        },
        "Assign",
      ),
      statusButtons.map(([status, label]) =>
        h(
          "button",
          {
            type: "button",
            class: "ghost",
            onclick: () => act(`${label} #${task.id}`, "PATCH", `/api/tasks/${task.id}`, { status }),
          },
          label,
        ),
      ),
    ),
    listSection("Depends on", "ul", {}, deps, (d) => `#${d.task_id} ${d.title} — ${statusLabel(d.status)} (${d.kind})`),
    listSection(
      "Needed by",
      "ul",
      {},
      dependents,
      (d) => `#${d.task_id} ${d.title} — ${statusLabel(d.status)} (${d.kind})`,
    ),
    listSection(
      "Tests",
      "ul",
      {},
      tests,
      (t) => `${t.passes === true ? "✔" : t.passes === false ? "✘" : "·"} ${t.description}`,
    ),
    listSection("Events", "ol", { class: "event-feed small" }, events.slice(-20).reverse(), (e) => [
      h("time", {}, fmtTime(e.created_at)),
      h("span", { class: "kind" }, String(e.kind).replace(/_/g, " ")),
      e.actor ? h("span", { class: "muted" }, e.actor) : null,
    ]),
  );
}

/** A heading and a list of `items` (each rendered by `line`), or nothing when there are none. */
function listSection(title, tag, attrs, items, line) {
  if (!items.length) return null;
  return [h("h4", {}, title), h(tag, attrs, items.map((item) => h("li", {}, line(item))))];
}

// ---------------------------------------------------------------- tabs, ticking, start

function renderAll() {
  renderHeader();
  renderBoard();
  renderLanes();
  renderFeed();
  renderActive();
}

function renderActive() {
  if (S.view === "graph") renderGraph();
  else if (S.view === "timeline") renderTimeline();
  else if (S.view === "costs") renderCosts();
  else if (S.view === "expertise") renderExpertise();
}

function showView(view) {
  S.view = view;
  for (const tab of $$(".tabs [data-view]")) tab.setAttribute("aria-selected", String(tab.dataset.view === view));
  for (const section of $$("main .view")) section.hidden = section.dataset.view !== view;
  const params = new URLSearchParams(location.search);
  params.set("view", view);
  if (S.project !== null) params.set("project", String(S.project));
  history.replaceState(null, "", `?${params}`);
  if (view === "expertise" && !S.expertise)
    loadExpertise()
      .then(renderExpertise)
      .catch(() => renderExpertise());
  renderActive();
}

function tick() {
  for (const el of $$(".lease[data-expires]")) {
    const text = fmtCountdown(Number(el.dataset.expires));
    el.textContent = el.title === "retry after" ? `retry ${text}` : text;
    el.classList.toggle("expiring", Number(el.dataset.expires) - now() < 10);
  }
  for (const el of $$(".ago[data-at]")) el.textContent = `♥ ${fmtAgo(Number(el.dataset.at))}`;
  // A retry delay ending makes a task ready without an event: move it when its time comes.
  for (const t of S.tasks.values()) {
    if (t.status === "pending" && t.available_at && t.available_at <= now() && t.available_at > now() - 1.5) {
      renderBoard();
      break;
    }
  }
  if (S.view === "timeline" && S.connected) renderTimeline();
}

function wire() {
  for (const tab of $$(".tabs [data-view]")) tab.addEventListener("click", () => showView(tab.dataset.view));
  $("#project-select").addEventListener("change", async (e) => {
    S.project = Number(e.target.value);
    S.lastEventId = null;
    S.events = [];
    S.actual = new Map();
    S.lastCommit = new Map();
    S.costTrend = [];
    S.selected = [];
    S.expertise = null;
    showView(S.view);
    await start();
  });
  $("#pause-button").addEventListener("click", async () => {
    const paused = isPaused();
    const result = await act(
      paused ? "resume claiming" : "pause claiming",
      "POST",
      projectPath(paused ? "/resume" : "/pause"),
      {},
    );
    if (result) refreshSoon({ status: true });
  });
  $("#sequence-button").addEventListener("click", forceSequential);
  $("#clear-selection").addEventListener("click", () => {
    S.selected = [];
    renderBoard();
  });
  $("#panel-close").addEventListener("click", () => {
    $("#task-panel").hidden = true;
    S.panelTask = null;
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      $("#task-panel").hidden = true;
      S.panelTask = null;
    }
  });
  const dialog = $("#settings-dialog");
  $("#settings-button").addEventListener("click", () => askForToken(""));
  $("#token-cancel").addEventListener("click", () => dialog.close());
  $("#token-save").addEventListener("click", () => {
    const value = $("#token-input").value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
    dialog.close();
    toast(value ? "token saved in this browser" : "token removed", "ok");
    if (S.project === null) return; // main() is waiting for it
    S.optional = {};
    reconnectAfterError();
  });
  for (const zone of [$("#kanban"), $("#parked"), $("#lanes")]) {
    zone.addEventListener("dragover", onDragOver);
    zone.addEventListener("drop", onDrop);
    zone.addEventListener("dragleave", (e) => {
      const target = dropTarget(e);
      if (target && !target.contains(e.relatedTarget)) target.classList.remove("drop-hover");
    });
  }
  window.addEventListener(
    "resize",
    debounce(() => S.view === "timeline" && renderTimeline(), 200),
  );
}

async function start() {
  try {
    await loadAll();
  } catch (error) {
    toast(`loading failed: ${error.message}${error.fix ? ` — ${error.fix}` : ""}`, "error");
  }
  connect();
}

// Show the token dialog (with why it is needed); the page goes on once a token is saved.
function askForToken(why) {
  const dialog = $("#settings-dialog");
  if (dialog.open) return;
  $("#token-input").value = localStorage.getItem(TOKEN_KEY) || "";
  $("#token-why").textContent = why;
  $("#token-why").hidden = !why;
  dialog.showModal();
}

async function main() {
  wire();
  const view = new URLSearchParams(location.search).get("view");
  if (view && $(`.tabs [data-view="${view}"]`)) showView(view);
  await loadClock();
  let ok = false;
  while (!ok) {
    try {
      ok = await loadProjects();
      if (!ok) {
        setConnected(true);
        await new Promise((r) => setTimeout(r, 3000));
      }
    } catch (error) {
      setConnected(false);
      if (error.status === 401 || error.status === 403) {
        askForToken(`The server refused: ${error.message}. ${error.fix || "Paste a token."}`);
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  showView(S.view);
  await start();
  watchHealth();
  setInterval(tick, 1000);
  document.body.dataset.ready = "true";
}

// For the browser tests and for curious people: the state, read-only by convention.
window.yokeflow = { state: S, refresh: () => start() };

main();
