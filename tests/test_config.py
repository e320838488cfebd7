"""Configuration: `.yokeflow.yaml` files in tmp_path, environment overrides, and the messages people see."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import yaml

from coordinator.config import (
    CONFIG_FILENAME,
    SECTIONS,
    Config,
    ModelPrice,
    load_config,
    render_default_config,
)
from coordinator.errors import ConfigError

NO_ENV: dict[str, str] = {}


def write(root: Path, text: str, name: str = CONFIG_FILENAME) -> Path:
    path = root / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(root: Path, text: str | None = None, env: dict[str, str] | None = None) -> str:
    """Load a config expected to be wrong and return the message, checking it is never raw pydantic."""
    if text is not None:
        write(root, text)
    with pytest.raises(ConfigError) as caught:
        load_config(root, env=NO_ENV if env is None else env)
    message = str(caught.value)
    assert "pydantic" not in message and "Input should" not in message and "Traceback" not in message
    assert caught.value.code == "config_error"
    return message


# --- defaults and good files ---------------------------------------------------------------------------


def test_missing_file_means_all_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path, env=NO_ENV)
    assert config == Config()
    assert config.database.url == "sqlite:///.yokeflow/coordinator.db"
    assert config.database.sqlite_synchronous == "NORMAL"
    assert config.database.sqlite_busy_timeout_ms == 5000
    assert (config.database.pool_min_size, config.database.pool_max_size) == (1, 10)
    assert config.database.connect_timeout_seconds == 10
    assert (config.server.host, config.server.port, config.server.project) == ("127.0.0.1", 8765, None)
    assert config.server.json_response is False
    parallel = config.parallel
    assert parallel.enabled and parallel.max_concurrency == 4 and parallel.strategy == "by_epic"
    assert parallel.worktree_dir == ".worktrees" and parallel.merge_strategy == "merge"
    assert parallel.target_branch is None and parallel.test_command is None
    assert parallel.test_timeout_seconds == 600 and parallel.avoid_file_conflicts
    assert parallel.done_when == "merged" and parallel.on_merge_failure == "reviewer_task"
    learning = config.learning
    assert learning.enabled and learning.expertise_max_lines == 1000
    assert learning.self_improve_interval == "daily"
    assert learning.domains == ["database", "api", "frontend", "testing", "security", "deployment", "general"]
    assert learning.skill_confidence_threshold == 0.8 and learning.skill_usage_threshold == 10
    cost = config.cost
    assert cost.enabled and cost.budget_limit_usd is None and cost.warn_at_fraction == 0.8
    assert cost.optimization_enabled and cost.default_model == "sonnet" and cost.model_overrides == {}
    assert cost.pricing["haiku"] == ModelPrice(input=1, output=5, cache_read=0.1, cache_write=1.25)
    assert cost.pricing["sonnet"] == ModelPrice(input=3, output=15, cache_read=0.3, cache_write=3.75)
    assert cost.pricing["opus"] == ModelPrice(input=15, output=75, cache_read=1.5, cache_write=18.75)
    leases = config.leases
    assert (leases.ttl_seconds, leases.heartbeat_interval_seconds, leases.max_attempts) == (300, 60, 3)
    assert (leases.backoff_base_seconds, leases.backoff_max_seconds, leases.backoff_jitter) == (5, 600, 0.2)
    assert leases.agent_ttl_seconds == 900


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file_is_valid(tmp_path: Path, text: str) -> None:
    write(tmp_path, text)
    assert load_config(tmp_path, env=NO_ENV) == Config()


def test_full_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        """\
        database:
          url: postgresql://yoke:secret@db.internal:5432/yokeflow
          sqlite_synchronous: full
          sqlite_busy_timeout_ms: 250
          pool_min_size: 2
          pool_max_size: 20
          connect_timeout_seconds: 2.5
        server:
          host: 0.0.0.0
          port: 9000
          project: shop
          json_response: true
        parallel:
          enabled: false
          max_concurrency: 8
          strategy: smart
          worktree_dir: build/trees
          merge_strategy: squash
          target_branch: release/1.2
          test_command: pytest -q -x
          test_timeout_seconds: 120
          avoid_file_conflicts: false
          done_when: completed
          on_merge_failure: manual
        learning:
          enabled: false
          expertise_max_lines: 500
          self_improve_interval: session
          domains: [api, data-pipeline, ml_ops]
          skill_confidence_threshold: 0.9
          skill_usage_threshold: 3
        cost:
          enabled: true
          budget_limit_usd: 25
          warn_at_fraction: 0.5
          optimization_enabled: false
          default_model: haiku
          model_overrides:
            critical_tasks: opus
            documentation: haiku
          pricing:
            sonnet: {input: 2.5}
            local-llm: {input: 0, output: 0, cache_read: 0, cache_write: 0}
        leases:
          ttl_seconds: 120
          heartbeat_interval_seconds: 30
          max_attempts: 5
          backoff_base_seconds: 1.5
          backoff_max_seconds: 60
          backoff_jitter: 0
          agent_ttl_seconds: 240
        """,
    )
    config = load_config(tmp_path, env=NO_ENV)
    assert config.database.url == "postgresql://yoke:secret@db.internal:5432/yokeflow"
    assert config.database.backend == "postgresql"
    assert config.database.sqlite_synchronous == "FULL"
    assert config.database.sqlite_busy_timeout_ms == 250
    assert (config.database.pool_min_size, config.database.pool_max_size) == (2, 20)
    assert config.database.connect_timeout_seconds == 2.5
    assert config.server == config.server.model_validate(
        {"host": "0.0.0.0", "port": 9000, "project": "shop", "json_response": True}
    )
    parallel = config.parallel
    assert not parallel.enabled and parallel.max_concurrency == 8 and parallel.strategy == "smart"
    assert parallel.worktree_dir == "build/trees" and parallel.merge_strategy == "squash"
    assert parallel.target_branch == "release/1.2" and parallel.test_command == "pytest -q -x"
    assert parallel.test_timeout_seconds == 120 and not parallel.avoid_file_conflicts
    assert parallel.done_when == "completed" and parallel.on_merge_failure == "manual"
    learning = config.learning
    assert not learning.enabled and learning.expertise_max_lines == 500
    assert learning.self_improve_interval == "session"
    assert learning.domains == ["api", "data-pipeline", "ml_ops"]
    assert learning.skill_confidence_threshold == 0.9 and learning.skill_usage_threshold == 3
    cost = config.cost
    assert cost.enabled and cost.budget_limit_usd == 25 and cost.warn_at_fraction == 0.5
    assert not cost.optimization_enabled and cost.default_model == "haiku"
    assert cost.model_overrides == {"critical_tasks": "opus", "documentation": "haiku"}
    # a partial entry merges over the built-in price; the other built-ins stay; a new model is added
    assert cost.pricing["sonnet"] == ModelPrice(input=2.5, output=15, cache_read=0.3, cache_write=3.75)
    assert cost.pricing["opus"].output == 75
    assert cost.pricing["local-llm"].cost_usd(1000, 1000) == 0
    leases = config.leases
    assert (leases.ttl_seconds, leases.heartbeat_interval_seconds, leases.max_attempts) == (120, 30, 5)
    assert (leases.backoff_base_seconds, leases.backoff_max_seconds, leases.backoff_jitter) == (1.5, 60, 0)
    assert leases.agent_ttl_seconds == 240


def test_partial_sections_keep_other_defaults(tmp_path: Path) -> None:
    write(
        tmp_path,
        """\
        parallel:
          max_concurrency: 2
        leases:
        cost:
          budget_limit_usd: 12.5
        """,
    )
    config = load_config(tmp_path, env=NO_ENV)
    assert config.parallel.max_concurrency == 2
    assert config.parallel.strategy == "by_epic"
    assert config.leases == Config().leases  # `leases:` with nothing under it is an empty section
    assert config.cost.budget_limit_usd == 12.5
    assert config.cost.pricing == Config().cost.pricing
    assert config.database == Config().database


def test_old_yokeflow_sections_are_ignored(tmp_path: Path) -> None:
    write(
        tmp_path,
        """\
        models:
          initializer: opus
          coding: sonnet
        timing:
          auto_continue_delay: 3
        project:
          default_generations_dir: generations
        docker:
          enabled: true
          image: yokeflow-sandbox:latest
        sandbox:
          type: docker
        parallel:
          max_concurrency: 6
        """,
    )
    config = load_config(tmp_path, env=NO_ENV)
    assert config.parallel.max_concurrency == 6
    assert config == Config.model_validate({"parallel": {"max_concurrency": 6}})


def test_file_with_only_old_sections_loads_defaults(tmp_path: Path) -> None:
    write(tmp_path, "models:\n  coding: sonnet\ntiming: {session_delay: 5}\n")
    assert load_config(tmp_path, env=NO_ENV) == Config()


@pytest.mark.parametrize(
    ("written", "loaded"), [("off", "OFF"), ("OFF", "OFF"), ("Normal", "NORMAL"), ("extra", "EXTRA")]
)
def test_sqlite_synchronous_is_case_insensitive(tmp_path: Path, written: str, loaded: str) -> None:
    write(tmp_path, f"database:\n  sqlite_synchronous: {written}\n")
    assert load_config(tmp_path, env=NO_ENV).database.sqlite_synchronous == loaded


@pytest.mark.parametrize("url", ["postgresql://u:p@localhost:5432/yoke", "postgres://localhost/yoke"])
def test_postgres_urls_are_accepted_and_left_alone(tmp_path: Path, url: str) -> None:
    write(tmp_path, f"database:\n  url: {url}\n")
    config = load_config(tmp_path, env=NO_ENV)
    assert config.database_url(tmp_path) == url
    assert config.database.sqlite_path(tmp_path) is None


def test_new_model_price_derives_cache_prices(tmp_path: Path) -> None:
    write(tmp_path, "cost:\n  pricing:\n    mini: {input: 2, output: 8}\n  default_model: mini\n")
    price = load_config(tmp_path, env=NO_ENV).cost.pricing["mini"]
    assert price == ModelPrice(input=2, output=8, cache_read=0.2, cache_write=2.5)
    assert price.cost_usd(1_000_000, 500_000, cache_read_tokens=1_000_000) == pytest.approx(6.2)


def test_blank_test_command_means_no_test_gate(tmp_path: Path) -> None:
    write(tmp_path, 'parallel:\n  test_command: "  "\n')
    assert load_config(tmp_path, env=NO_ENV).parallel.test_command is None


def test_explicit_path_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9999\n", name="custom.yaml")
    write(tmp_path, "server:\n  port: 1111\n")
    assert load_config(tmp_path, path=path, env=NO_ENV).server.port == 9999


def test_root_defaults_to_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "server:\n  port: 9001\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(env=NO_ENV).server.port == 9001


# --- bad values ----------------------------------------------------------------------------------------

BAD_VALUES = [
    ("leases:\n  ttl_seconds: 3\n", "leases.ttl_seconds = 3", "between 5 and 86400 seconds"),
    ("leases:\n  ttl_seconds: 100000\n", "leases.ttl_seconds = 100000", "between 5 and 86400 seconds"),
    ("leases:\n  ttl_seconds: 2.5\n", "leases.ttl_seconds = 2.5", "a whole number"),
    (
        "leases:\n  heartbeat_interval_seconds: 300\n",
        "leases.heartbeat_interval_seconds = 300",
        "less than leases.ttl_seconds (300)",
    ),
    ("leases:\n  max_attempts: 0\n", "leases.max_attempts = 0", "between 1 and 100"),
    ("leases:\n  backoff_jitter: 1.5\n", "leases.backoff_jitter = 1.5", "between 0 and 1"),
    (
        "leases:\n  backoff_base_seconds: 30\n  backoff_max_seconds: 10\n",
        "leases.backoff_max_seconds = 10",
        "at least leases.backoff_base_seconds (30)",
    ),
    (
        "leases:\n  agent_ttl_seconds: 60\n",
        "leases.agent_ttl_seconds = 60",
        "greater than leases.heartbeat_interval_seconds (60)",
    ),
    ("server:\n  port: 0\n", "server.port = 0", "between 1 and 65535"),
    ("server:\n  port: 70000\n", "server.port = 70000", "between 1 and 65535"),
    ('server:\n  port: "http"\n', 'server.port = "http"', "a whole number between 1 and 65535"),
    ("server:\n  json_response: maybe\n", 'server.json_response = "maybe"', "must be true or false"),
    ('server:\n  host: ""\n', 'server.host = ""', "non-empty string"),
    ("parallel:\n  max_concurrency: 65\n", "parallel.max_concurrency = 65", "between 1 and 64"),
    ("parallel:\n  max_concurrency: yes\n", "parallel.max_concurrency = true", "a whole number"),
    ("parallel:\n  strategy: random\n", 'parallel.strategy = "random"', "one of by_epic, by_task, smart"),
    ("parallel:\n  merge_strategy: rebase\n", 'parallel.merge_strategy = "rebase"', "one of merge, squash"),
    ("parallel:\n  done_when: pushed\n", 'parallel.done_when = "pushed"', "one of merged, completed"),
    ("parallel:\n  on_merge_failure: retry\n", "parallel.on_merge_failure", "one of reviewer_task, manual"),
    ("parallel:\n  target_branch: my branch\n", 'parallel.target_branch = "my branch"', "git branch name"),
    ("parallel:\n  test_timeout_seconds: 0\n", "parallel.test_timeout_seconds = 0", "between 1 and 86400"),
    ("parallel:\n  test_command: [make, test]\n", "parallel.test_command", "a shell command (a string)"),
    (
        "database:\n  sqlite_synchronous: sometimes\n",
        'database.sqlite_synchronous = "SOMETIMES"',
        "one of OFF, NORMAL, FULL, EXTRA",
    ),
    (
        "database:\n  sqlite_busy_timeout_ms: 0\n",
        "database.sqlite_busy_timeout_ms = 0",
        "greater than 0 milliseconds",
    ),
    (
        "database:\n  pool_min_size: 5\n  pool_max_size: 2\n",
        "database.pool_max_size = 2",
        "at least database.pool_min_size (5)",
    ),
    ("database:\n  connect_timeout_seconds: 0\n", "database.connect_timeout_seconds = 0", "greater than 0"),
    ("database:\n  url: mysql://localhost/yoke\n", 'database.url = "mysql://localhost/yoke"', "sqlite:///"),
    ("database:\n  url: sqlite://relative.db\n", "database.url", "postgresql://"),
    ('database:\n  url: "sqlite:///:memory:"\n', "database.url", "in-memory SQLite"),
    ("learning:\n  domains: []\n", "learning.domains = []", "at least one domain"),
    ("learning:\n  domains: [api, Front End]\n", "learning.domains", "'Front End' is not slug-like"),
    ("learning:\n  domains: [api, general, api]\n", "learning.domains", "'api' listed more than once"),
    ("learning:\n  domains: api\n", 'learning.domains = "api"', "non-empty list of unique lowercase names"),
    ("learning:\n  expertise_max_lines: 10\n", "learning.expertise_max_lines = 10", "between 50 and 100000"),
    (
        "learning:\n  self_improve_interval: weekly\n",
        "learning.self_improve_interval",
        "never, session, daily",
    ),
    (
        "learning:\n  skill_confidence_threshold: 1.2\n",
        "learning.skill_confidence_threshold = 1.2",
        "between 0 and 1",
    ),
    ("cost:\n  budget_limit_usd: 0\n", "cost.budget_limit_usd = 0", "greater than 0 (USD), or null"),
    ("cost:\n  budget_limit_usd: -5\n", "cost.budget_limit_usd = -5", "greater than 0 (USD), or null"),
    ("cost:\n  warn_at_fraction: 0\n", "cost.warn_at_fraction = 0", "greater than 0 and at most 1"),
    ("cost:\n  warn_at_fraction: 1.5\n", "cost.warn_at_fraction = 1.5", "greater than 0 and at most 1"),
    ("cost:\n  enabled: 1\n", "cost.enabled = 1", "must be true or false"),
    (
        "cost:\n  enabled: false\n  budget_limit_usd: 10\n",
        "cost.budget_limit_usd = 10",
        "needs cost.enabled: true",
    ),
    ("cost:\n  default_model: sonet\n", 'cost.default_model = "sonet"', "did you mean sonnet?"),
    (
        "cost:\n  model_overrides: {critical_tasks: gpt-9}\n",
        'cost.model_overrides.critical_tasks = "gpt-9"',
        "add cost.pricing.gpt-9 with input and output prices",
    ),
    ("cost:\n  model_overrides: [opus]\n", "cost.model_overrides", "a mapping of task type"),
    ("cost:\n  pricing:\n    sonnet: {input: -1}\n", "cost.pricing.sonnet.input = -1", "at least 0"),
    ("cost:\n  pricing:\n    mini: {input: 1}\n", "cost.pricing.mini.output", "is required"),
    ("cost:\n  pricing:\n    mini: 3\n", "cost.pricing.mini = 3", "a mapping of model name"),
    ("leases: 5\n", "leases = 5", "must be a mapping of keys: ttl_seconds"),
    ("parallel: [enabled]\n", 'parallel = ["enabled"]', "must be a mapping of keys"),
]


@pytest.mark.parametrize(("text", "where", "allowed"), BAD_VALUES)
def test_bad_value_names_key_value_file_and_what_is_allowed(
    tmp_path: Path, text: str, where: str, allowed: str
) -> None:
    message = config_error(tmp_path, text)
    assert message.startswith("invalid configuration: ")
    assert where in message
    assert allowed in message
    assert str(tmp_path / CONFIG_FILENAME) in message


def test_unknown_key_in_a_section_suggests_the_right_one(tmp_path: Path) -> None:
    message = config_error(tmp_path, "parallel:\n  max_concurency: 3\n")
    assert "parallel.max_concurency = 3" in message
    assert "unknown key (did you mean max_concurrency?)" in message
    assert "valid keys: enabled, max_concurrency, strategy" in message


def test_unknown_key_in_a_price_suggests_the_right_one(tmp_path: Path) -> None:
    message = config_error(tmp_path, "cost:\n  pricing:\n    sonnet: {inptu: 2}\n")
    assert "cost.pricing.sonnet.inptu = 2" in message
    assert "did you mean input?" in message


def test_several_bad_values_are_listed_in_one_message(tmp_path: Path) -> None:
    message = config_error(
        tmp_path,
        """\
        server:
          port: 0
        leases:
          ttl_seconds: 1
          ttll: 5
        learning:
          domains: []
        """,
    )
    assert message.startswith("invalid configuration, 4 problems:")
    for part in ("server.port = 0", "leases.ttl_seconds = 1", "leases.ttll", "learning.domains = []"):
        assert part in message
    assert message.count(f"(in {tmp_path / CONFIG_FILENAME})") == 4
    assert "Fix: " in message


# --- unreadable and malformed files --------------------------------------------------------------------


def test_explicit_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match="does not exist") as caught:
        load_config(tmp_path, path=missing, env=NO_ENV)
    assert str(missing) in str(caught.value)


def test_config_path_that_is_a_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILENAME).mkdir()
    message = config_error(tmp_path)
    assert "is a directory, not a file" in message
    assert str(tmp_path / CONFIG_FILENAME) in message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "parallel: {}\n")
    path.chmod(0)
    try:
        message = config_error(tmp_path)
    finally:
        path.chmod(0o644)
    assert "permission denied" in message and str(path) in message


def test_permission_denied_while_reading_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the same as above, for when the tests run as root (who can read a chmod 000 file)
    path = write(tmp_path, "parallel: {}\n")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    message = config_error(tmp_path)
    assert f"cannot read config file {path}: permission denied" in message
    assert "make the file readable" in message


def test_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILENAME).write_bytes(b"server:\n  project: caf\xe9\n")
    message = config_error(tmp_path)
    assert "is not UTF-8 text (byte 0xe9 on line 2)" in message
    assert "save the file with UTF-8 encoding" in message


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILENAME).write_bytes(b"\xef\xbb\xbfserver:\n  project: caf\xc3\xa9\n")
    assert load_config(tmp_path, env=NO_ENV).server.project == "café"


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    message = config_error(tmp_path, "leases:\n  ttl_seconds: 60\n\tmax_attempts: 3\n")
    assert "is not valid YAML" in message
    assert "line 3, column 1" in message
    assert str(tmp_path / CONFIG_FILENAME) in message


def test_invalid_yaml_mapping_error_shows_the_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, "parallel:\n  enabled: true\n  strategy: by_epic: x\n")
    assert "line 3, column" in message
    assert "strategy: by_epic: x" in message


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- parallel\n- leases\n", "a list"), ("just some words\n", 'the text "just some words"')],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    message = config_error(tmp_path, text)
    assert "must hold a mapping of sections" in message
    assert f"but it holds {kind}" in message


# --- environment overrides -----------------------------------------------------------------------------


def test_env_overrides_file_and_defaults(tmp_path: Path) -> None:
    write(tmp_path, "leases:\n  ttl_seconds: 120\n  max_attempts: 7\n")
    env = {
        "YOKEFLOW_DATABASE_URL": "postgresql://ci@localhost/yoke",
        "YOKEFLOW_LEASES_TTL_SECONDS": "600",
        "YOKEFLOW_PARALLEL_TEST_COMMAND": 'pytest -k "a: b" -q',
        "YOKEFLOW_PARALLEL_ENABLED": "false",
        "YOKEFLOW_LEARNING_DOMAINS": "[api, general]",
        "YOKEFLOW_COST_BUDGET_LIMIT_USD": "12.5",
        "YOKEFLOW_COST_MODEL_OVERRIDES": "{critical_tasks: opus}",
        "YOKEFLOW_SERVER_PROJECT": "2024",
        "YOKEFLOW_DATABASE_SQLITE_SYNCHRONOUS": "off",
    }
    config = load_config(tmp_path, env=env)
    assert config.database.url == "postgresql://ci@localhost/yoke"
    assert config.leases.ttl_seconds == 600
    assert config.leases.max_attempts == 7  # the rest of the file's section stays
    assert config.parallel.test_command == 'pytest -k "a: b" -q'
    assert config.parallel.enabled is False
    assert config.learning.domains == ["api", "general"]
    assert config.cost.budget_limit_usd == 12.5
    assert config.cost.model_overrides == {"critical_tasks": "opus"}
    assert config.server.project == "2024"
    assert config.database.sqlite_synchronous == "OFF"


@pytest.mark.parametrize("raw", ["null", "", "~"])
def test_env_null_clears_an_optional_value(tmp_path: Path, raw: str) -> None:
    write(tmp_path, "parallel:\n  target_branch: main\ncost:\n  budget_limit_usd: 10\n")
    env = {"YOKEFLOW_PARALLEL_TARGET_BRANCH": raw, "YOKEFLOW_COST_BUDGET_LIMIT_USD": raw}
    config = load_config(tmp_path, env=env)
    assert config.parallel.target_branch is None and config.cost.budget_limit_usd is None


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOKEFLOW_SERVER_PORT", "9123")
    assert load_config(tmp_path).server.port == 9123


def test_unrelated_yokeflow_variables_are_left_alone(tmp_path: Path) -> None:
    env = {"YOKEFLOW_TEST_POSTGRES_URL": "postgresql://x", "YOKEFLOW_TOKEN": "abc", "YOKEFLOW_MODELS_X": "1"}
    assert load_config(tmp_path, env=env) == Config()


def test_env_variable_naming_an_unknown_key_is_an_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, env={"YOKEFLOW_LEASES_TTL": "600"})
    assert "environment variable YOKEFLOW_LEASES_TTL names no setting" in message
    assert "did you mean YOKEFLOW_LEASES_TTL_SECONDS?" in message
    assert "valid ones are YOKEFLOW_LEASES_TTL_SECONDS, YOKEFLOW_LEASES_HEARTBEAT_INTERVAL_SECONDS" in message


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    write(tmp_path, "leases:\n  ttl_seconds: 120\n")
    message = config_error(tmp_path, env={"YOKEFLOW_LEASES_TTL_SECONDS": "2"})
    assert "leases.ttl_seconds = 2 (from environment variable YOKEFLOW_LEASES_TTL_SECONDS)" in message
    assert "between 5 and 86400 seconds" in message


def test_env_value_that_is_not_yaml_names_the_variable(tmp_path: Path) -> None:
    message = config_error(tmp_path, env={"YOKEFLOW_LEARNING_DOMAINS": "[api, general"})
    assert 'environment variable YOKEFLOW_LEARNING_DOMAINS = "[api, general"' in message
    assert "not a valid YAML value" in message


def test_env_and_file_problems_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path, "server:\n  port: 0\n")
    message = config_error(
        tmp_path, env={"YOKEFLOW_SERVER_PROT": "1", "YOKEFLOW_PARALLEL_MAX_CONCURRENCY": "100"}
    )
    assert message.startswith("invalid configuration, 3 problems:")
    assert "YOKEFLOW_SERVER_PROT names no setting (did you mean YOKEFLOW_SERVER_PORT?)" in message
    assert f"server.port = 0 (in {tmp_path / CONFIG_FILENAME})" in message
    assert "from environment variable YOKEFLOW_PARALLEL_MAX_CONCURRENCY" in message


def test_env_change_that_breaks_a_default_names_both_settings(tmp_path: Path) -> None:
    message = config_error(tmp_path, env={"YOKEFLOW_LEASES_TTL_SECONDS": "30"})
    assert "leases.heartbeat_interval_seconds = 60 (default value)" in message
    assert "less than leases.ttl_seconds (30)" in message


# --- paths, round trips, the default file --------------------------------------------------------------


def test_relative_sqlite_path_resolves_against_the_root(tmp_path: Path) -> None:
    config = load_config(tmp_path, env=NO_ENV)
    expected = (tmp_path / ".yokeflow" / "coordinator.db").absolute()
    assert config.database.sqlite_path(tmp_path) == expected
    assert config.database_url(tmp_path) == "sqlite:///" + expected.as_posix()
    assert config.database.backend == "sqlite"


def test_absolute_sqlite_path_is_kept(tmp_path: Path) -> None:
    target = (tmp_path / "elsewhere" / "state.db").absolute()
    write(tmp_path, f"database:\n  url: sqlite:///{target.as_posix()}\n")
    config = load_config(tmp_path / "unrelated", path=tmp_path / CONFIG_FILENAME, env=NO_ENV)
    assert config.database.sqlite_path(tmp_path / "unrelated") == target
    assert config.database_url(tmp_path / "unrelated") == "sqlite:///" + target.as_posix()


def test_model_dump_round_trips(tmp_path: Path) -> None:
    write(
        tmp_path, "parallel:\n  test_command: make test\ncost:\n  pricing:\n    mini: {input: 1, output: 2}\n"
    )
    config = load_config(tmp_path, env=NO_ENV)
    dumped = config.model_dump(mode="json")
    assert Config.model_validate(dumped) == config
    (tmp_path / "dumped.yaml").write_text(yaml.safe_dump(dumped), encoding="utf-8")
    assert load_config(tmp_path, path=tmp_path / "dumped.yaml", env=NO_ENV) == config


def test_rendered_default_file_loads_back_to_the_defaults(tmp_path: Path) -> None:
    text = render_default_config()
    (tmp_path / CONFIG_FILENAME).write_text(text, encoding="utf-8")
    assert load_config(tmp_path, env=NO_ENV) == Config()
    loaded = yaml.safe_load(text)
    for name, section in SECTIONS.items():
        assert set(loaded[name]) == set(section.model_fields), name
    assert text.count("\n  # ") >= sum(len(section.model_fields) for section in SECTIONS.values())
    assert "ttl_seconds: 300" in text and "between 5 and 86400 seconds" in text
