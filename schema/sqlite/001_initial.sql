-- YokeFlow Coordinator schema, version 1 (SQLite).
-- Times are UNIX epoch seconds (REAL). JSON columns hold JSON text.
-- Dependencies live in ONE place: task_dependencies / epic_dependencies.

CREATE TABLE projects (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    description  TEXT NOT NULL DEFAULT '',
    spec         TEXT NOT NULL DEFAULT '',
    repo_path    TEXT,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'complete', 'archived')),
    metadata     TEXT NOT NULL DEFAULT '{}',
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);

CREATE TABLE epics (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id    INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    priority      INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress', 'done', 'cancelled')),
    metadata      TEXT NOT NULL DEFAULT '{}',
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    completed_at  REAL
);
CREATE INDEX idx_epics_project ON epics(project_id, priority, id);

CREATE TABLE agents (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id         INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    persona            TEXT NOT NULL,
    role               TEXT NOT NULL DEFAULT 'worker' CHECK (role IN ('worker', 'planner', 'observer')),
    capabilities       TEXT NOT NULL DEFAULT '[]',
    token_hash         TEXT NOT NULL UNIQUE,
    status             TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'lost', 'stopped')),
    last_heartbeat_at  REAL NOT NULL,
    worktree           TEXT,
    pid                INTEGER,
    created_at         REAL NOT NULL
);
CREATE INDEX idx_agents_project ON agents(project_id, status);

CREATE TABLE tasks (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id        INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    epic_id           INTEGER REFERENCES epics(id) ON DELETE CASCADE,
    local_key         TEXT,
    title             TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    action            TEXT NOT NULL DEFAULT '',
    priority          INTEGER NOT NULL DEFAULT 0,
    persona           TEXT,
    domain            TEXT,
    status            TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                      ('pending', 'in_progress', 'merging', 'done', 'failed', 'conflict', 'rejected', 'cancelled')),
    predicted_files   TEXT NOT NULL DEFAULT '[]',
    estimate          REAL NOT NULL DEFAULT 1.0 CHECK (estimate > 0),
    remaining_path    REAL NOT NULL DEFAULT 1.0,
    batch_number      INTEGER,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    available_at      REAL NOT NULL DEFAULT 0,
    lease_owner       INTEGER REFERENCES agents(id) ON DELETE SET NULL,
    lease_token       TEXT,
    lease_expires_at  REAL,
    lease_ttl         REAL,
    progress_note     TEXT,
    expired_owner     INTEGER,
    expiry_noted      TEXT,
    result            TEXT,
    summary           TEXT,
    files_changed     TEXT NOT NULL DEFAULT '[]',
    commit_sha        TEXT,
    branch            TEXT,
    last_error        TEXT,
    metadata          TEXT NOT NULL DEFAULT '{}',
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    started_at        REAL,
    completed_at      REAL,
    UNIQUE (project_id, local_key)
);
-- The claim path: claimable tasks of one project in claim order (the first ready one wins).
CREATE INDEX idx_tasks_claim ON tasks(project_id, priority, remaining_path DESC, id)
    WHERE status IN ('pending', 'in_progress');
CREATE INDEX idx_tasks_status ON tasks(project_id, status);
CREATE INDEX idx_tasks_epic ON tasks(epic_id, status);
CREATE INDEX idx_tasks_lease ON tasks(lease_expires_at) WHERE status = 'in_progress';

CREATE TABLE task_dependencies (
    task_id             INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    depends_on_task_id  INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    kind                TEXT NOT NULL DEFAULT 'hard' CHECK (kind IN ('hard', 'soft')),
    created_at          REAL NOT NULL,
    PRIMARY KEY (task_id, depends_on_task_id),
    CHECK (task_id <> depends_on_task_id)
);
CREATE INDEX idx_task_deps_reverse ON task_dependencies(depends_on_task_id, kind);

-- The files a task is predicted to touch (from the plan); claims avoid leasing two
-- tasks that share a file at once.
CREATE TABLE task_files (
    task_id  INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    path     TEXT NOT NULL,
    PRIMARY KEY (task_id, path)
);
CREATE INDEX idx_task_files_path ON task_files(path);

CREATE TABLE epic_dependencies (
    epic_id             INTEGER NOT NULL REFERENCES epics(id) ON DELETE CASCADE,
    depends_on_epic_id  INTEGER NOT NULL REFERENCES epics(id) ON DELETE CASCADE,
    kind                TEXT NOT NULL DEFAULT 'hard' CHECK (kind IN ('hard', 'soft')),
    created_at          REAL NOT NULL,
    PRIMARY KEY (epic_id, depends_on_epic_id),
    CHECK (epic_id <> depends_on_epic_id)
);
CREATE INDEX idx_epic_deps_reverse ON epic_dependencies(depends_on_epic_id);

CREATE TABLE task_tests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id      INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    category     TEXT NOT NULL DEFAULT 'functional',
    description  TEXT NOT NULL,
    steps        TEXT NOT NULL DEFAULT '[]',
    passes       INTEGER CHECK (passes IN (0, 1)),
    notes        TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX idx_task_tests_task ON task_tests(task_id);

CREATE TABLE personas (
    name         TEXT PRIMARY KEY,
    description  TEXT NOT NULL DEFAULT '',
    model        TEXT,
    profile      TEXT NOT NULL DEFAULT 'worker',
    tools        TEXT NOT NULL DEFAULT '[]',
    domains      TEXT NOT NULL DEFAULT '[]',
    prompt       TEXT NOT NULL DEFAULT '',
    updated_at   REAL NOT NULL
);

CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id   INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    agent_id     INTEGER REFERENCES agents(id) ON DELETE SET NULL,
    task_id      INTEGER REFERENCES tasks(id) ON DELETE SET NULL,
    status       TEXT NOT NULL DEFAULT 'running',
    summary      TEXT,
    metadata     TEXT NOT NULL DEFAULT '{}',
    started_at   REAL NOT NULL,
    ended_at     REAL
);
CREATE INDEX idx_sessions_project ON sessions(project_id, started_at);

-- Append-only audit log; also the source of the live event feed.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id     INTEGER REFERENCES projects(id) ON DELETE CASCADE,
    task_id        INTEGER,
    agent_id       INTEGER,
    actor          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    before_status  TEXT,
    after_status   TEXT,
    payload        TEXT NOT NULL DEFAULT '{}',
    created_at     REAL NOT NULL
);
CREATE INDEX idx_events_project ON events(project_id, id);
CREATE INDEX idx_events_task ON events(task_id, id);

CREATE TABLE parallel_batches (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id    INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    batch_number  INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done')),
    started_at    REAL,
    completed_at  REAL,
    created_at    REAL NOT NULL,
    UNIQUE (project_id, batch_number)
);

CREATE TABLE worktrees (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id    INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    agent_id      INTEGER REFERENCES agents(id) ON DELETE SET NULL,
    name          TEXT NOT NULL,
    path          TEXT NOT NULL,
    branch        TEXT,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'idle', 'removed', 'broken')),
    base_commit   TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE merges (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id      INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    task_id         INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    branch          TEXT NOT NULL,
    target_branch   TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'queued' CHECK (status IN
                    ('queued', 'checking', 'merging', 'testing', 'merged', 'conflict', 'rejected', 'failed')),
    conflict_files  TEXT NOT NULL DEFAULT '[]',
    test_output     TEXT,
    merge_commit    TEXT,
    error           TEXT,
    queued_at       REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL
);
CREATE INDEX idx_merges_queue ON merges(project_id, status, id);

CREATE TABLE agent_costs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id          INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    task_id             INTEGER REFERENCES tasks(id) ON DELETE SET NULL,
    agent_id            INTEGER REFERENCES agents(id) ON DELETE SET NULL,
    session_id          INTEGER REFERENCES sessions(id) ON DELETE SET NULL,
    model               TEXT NOT NULL,
    operation           TEXT NOT NULL DEFAULT 'task',
    input_tokens        INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens       INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens   INTEGER NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    cost_usd            REAL NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    created_at          REAL NOT NULL
);
CREATE INDEX idx_costs_project ON agent_costs(project_id, created_at);
CREATE INDEX idx_costs_task ON agent_costs(task_id);

CREATE TABLE expertise_files (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id    INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    domain        TEXT NOT NULL,
    content       TEXT NOT NULL DEFAULT '{}',
    version       INTEGER NOT NULL DEFAULT 1,
    line_count    INTEGER NOT NULL DEFAULT 0,
    confidence    REAL NOT NULL DEFAULT 0,
    usage_count   INTEGER NOT NULL DEFAULT 0,
    validated_at  REAL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    UNIQUE (project_id, domain)
);

CREATE TABLE expertise_updates (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    expertise_id    INTEGER NOT NULL REFERENCES expertise_files(id) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    change_type     TEXT NOT NULL,
    change_summary  TEXT NOT NULL,
    diff            TEXT NOT NULL DEFAULT '{}',
    created_at      REAL NOT NULL
);
CREATE INDEX idx_expertise_updates ON expertise_updates(expertise_id, version);

CREATE VIEW v_project_costs AS
SELECT project_id, model, operation,
       COUNT(*) AS operation_count,
       SUM(input_tokens) AS total_input_tokens,
       SUM(output_tokens) AS total_output_tokens,
       SUM(cost_usd) AS total_cost_usd,
       AVG(cost_usd) AS avg_cost_per_operation
FROM agent_costs
GROUP BY project_id, model, operation;

CREATE VIEW v_parallel_progress AS
SELECT t.project_id, t.batch_number,
       COALESCE(pb.status, 'pending') AS batch_status,
       COUNT(*) AS total_tasks,
       SUM(CASE WHEN t.status = 'done' THEN 1 ELSE 0 END) AS completed_tasks,
       SUM(CASE WHEN t.status IN ('in_progress', 'merging') THEN 1 ELSE 0 END) AS running_tasks,
       pb.started_at, pb.completed_at
FROM tasks t
LEFT JOIN parallel_batches pb ON pb.project_id = t.project_id AND pb.batch_number = t.batch_number
WHERE t.batch_number IS NOT NULL
GROUP BY t.project_id, t.batch_number, pb.status, pb.started_at, pb.completed_at;

CREATE VIEW v_worktree_status AS
SELECT w.project_id, w.id AS worktree_id, w.name, w.path, w.branch, w.status,
       a.name AS agent_name, a.persona,
       t.id AS current_task_id, t.title AS current_task_title,
       w.created_at, w.updated_at
FROM worktrees w
LEFT JOIN agents a ON a.id = w.agent_id
LEFT JOIN tasks t ON t.lease_owner = w.agent_id AND t.status = 'in_progress';
