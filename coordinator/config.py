"""The coordinator's configuration: `.yokeflow.yaml` at the repository root, plus environment overrides.

`load_config()` reads the file (a missing file means all defaults), applies `YOKEFLOW_<SECTION>_<KEY>`
environment variables, and validates everything into `Config`. Anything wrong becomes one
`ConfigError` that lists every problem with its key path, value, origin and what is allowed.
Top-level sections this coordinator does not know (left over from the older YokeFlow: `models`,
`timing`, `docker`, ...) are ignored; unknown keys inside our sections are errors.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeGuard, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from coordinator.errors import ConfigError

CONFIG_FILENAME = ".yokeflow.yaml"
ENV_PREFIX = "YOKEFLOW_"
DOCS_HINT = "see docs/configuration.md"

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_BAD_BRANCH = re.compile(r"[\s~^:?*\[\\]|\.\.|@\{|^[-/]|/$|\.lock$|^@$")

DEFAULT_DOMAINS = ["database", "api", "frontend", "testing", "security", "deployment", "general"]
DEFAULT_PRICING: dict[str, dict[str, float]] = {
    "haiku": {"input": 1.0, "output": 5.0, "cache_read": 0.1, "cache_write": 1.25},
    "sonnet": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
    "opus": {"input": 15.0, "output": 75.0, "cache_read": 1.5, "cache_write": 18.75},
}


def _number(
    default: float,
    description: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> Any:
    """A strict int/float field (so YAML `yes` does not pass as 1) with range bounds."""
    return Field(default=default, strict=True, description=description, ge=ge, gt=gt, le=le)


def _flag(default: bool, description: str) -> Any:
    return Field(default=default, strict=True, description=description)


class _Section(BaseModel):
    """Base of the sections: unknown keys are errors; a number is accepted where text is expected;
    defaults are validated too, so a change to one key cannot leave a dependent default invalid."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, validate_default=True)


class DatabaseConfig(_Section):
    """Where the coordinator keeps its state (SQLite file or PostgreSQL)."""

    url: str = Field(
        default="sqlite:///.yokeflow/coordinator.db",
        description="Database URL; a relative SQLite path is relative to the folder holding .yokeflow.yaml.",
    )
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = Field(
        default="NORMAL", description="SQLite PRAGMA synchronous (case-insensitive); NORMAL is safe with WAL."
    )
    sqlite_busy_timeout_ms: int = _number(
        5000, "How long a SQLite writer waits for another process's lock.", gt=0
    )
    pool_min_size: int = _number(1, "PostgreSQL connection pool: connections kept open.", ge=0, le=1000)
    pool_max_size: int = _number(10, "PostgreSQL connection pool: most connections at once.", ge=1, le=1000)
    connect_timeout_seconds: float = _number(10.0, "How long to wait for the database to answer.", gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if url.startswith(("postgresql://", "postgres://")):
            if url.split("://", 1)[1].strip() == "":
                raise ValueError(
                    "names no PostgreSQL server; use postgresql://user:password@host:5432/dbname"
                )
            return url
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if path in ("", ":memory:"):
                raise ValueError(
                    "needs a file path (several processes share the database, so in-memory SQLite "
                    "cannot work); use sqlite:///.yokeflow/coordinator.db"
                )
            return url
        raise ValueError(
            "must start with sqlite:/// (then a relative path, or a second / for an absolute path), "
            "postgresql:// or postgres://"
        )

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _upper_synchronous(cls, value: object) -> object:
        if value is False:  # YAML 1.1 reads a bare OFF as the boolean false
            return "OFF"
        return value.upper() if isinstance(value, str) else value

    @field_validator("pool_max_size")
    @classmethod
    def _max_at_least_min(cls, value: int, info: ValidationInfo) -> int:
        minimum = info.data.get("pool_min_size")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least database.pool_min_size ({minimum})")
        return value

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.url.startswith("sqlite:") else "postgresql"

    def sqlite_path(self, root: Path) -> Path | None:
        """The absolute SQLite file path (a relative one is taken from `root`), or None for PostgreSQL."""
        if self.backend != "sqlite":
            return None
        path = Path(self.url.removeprefix("sqlite:///")).expanduser()
        return path if path.is_absolute() else Path(root).absolute() / path

    def resolved_url(self, root: Path) -> str:
        """The URL with a relative SQLite path made absolute against `root` (PostgreSQL URLs unchanged)."""
        path = self.sqlite_path(root)
        return self.url if path is None else "sqlite:///" + path.as_posix()


class ServerConfig(_Section):
    """The MCP / HTTP server."""

    host: str = Field(default="127.0.0.1", min_length=1, description="Address the HTTP server listens on.")
    port: int = _number(8765, "Port the HTTP server listens on.", ge=1, le=65535)
    project: str | None = Field(
        default=None,
        min_length=1,
        description="Project used when a request names none.",
    )
    json_response: bool = _flag(False, "Answer MCP HTTP requests with plain JSON instead of an SSE stream.")


WorktreeStrategy = Literal["by_epic", "by_task", "smart"]


class ParallelConfig(_Section):
    """Parallel agents, worktrees and the merge queue."""

    enabled: bool = _flag(True, "Run several agents at once.")
    max_concurrency: int = _number(4, "Most agents working at the same time.", ge=1, le=64)
    strategy: WorktreeStrategy = Field(
        default="by_epic",
        description="How the execution plan groups each batch's tasks into worktrees: one per epic, "
        "one per task, or tasks that might touch the same files together.",
    )
    worktree_dir: str = Field(
        default=".worktrees",
        min_length=1,
        description="Folder (relative to the repository) holding agent worktrees.",
    )
    merge_strategy: Literal["merge", "squash"] = Field(
        default="merge", description="How a finished task branch lands on the target branch."
    )
    target_branch: str | None = Field(default=None, description="Branch that finished work merges into.")
    test_command: str | None = Field(
        default=None, description="Shell command that must pass before a merge lands."
    )
    test_timeout_seconds: int = _number(600, "Longest the test gate may run.", ge=1, le=86400)
    avoid_file_conflicts: bool = _flag(
        True, "Never lease two tasks predicted to touch the same files at once."
    )
    done_when: Literal["merged", "completed"] = Field(
        default="merged",
        description="When dependents may start: once the task is merged, or once an agent completes it.",
    )
    on_merge_failure: Literal["reviewer_task", "manual"] = Field(
        default="reviewer_task",
        description="On a conflict or red tests: create a reviewer task, or wait for a person.",
    )

    @field_validator("target_branch")
    @classmethod
    def _check_branch(cls, value: str | None) -> str | None:
        if value is not None and (value == "" or _BAD_BRANCH.search(value)):
            raise ValueError(
                "must be a git branch name such as main or release/1.2 "
                "(no spaces, '..', '~', '^', ':', '?', '*', '[' or '\\'), or null for the current branch"
            )
        return value

    @field_validator("test_command", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class LearningConfig(_Section):
    """Expertise files and skills learned from the agents' work."""

    enabled: bool = _flag(True, "Collect learnings and maintain expertise per domain.")
    expertise_max_lines: int = _number(1000, "Cap on the lines of one domain's expertise.", ge=50, le=100000)
    self_improve_interval: Literal["never", "session", "daily"] = Field(
        default="daily", description="How often expertise is consolidated."
    )
    domains: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DOMAINS),
        description="Expertise domains work is classified into.",
    )
    skill_confidence_threshold: float = _number(
        0.8, "Confidence an expertise needs before a SKILL.md is generated.", ge=0, le=1
    )
    skill_usage_threshold: int = _number(10, "Uses an expertise needs before a SKILL.md is generated.", ge=1)

    @field_validator("domains")
    @classmethod
    def _check_domains(cls, domains: list[str]) -> list[str]:
        if not domains:
            raise ValueError("must list at least one domain, e.g. [general]")
        problems = []
        bad = [name for name in domains if not _SLUG.match(name)]
        if bad:
            problems.append(
                f"{', '.join(map(repr, bad))} {'is' if len(bad) == 1 else 'are'} not slug-like "
                "(use lowercase letters, digits, '-' and '_', starting with a letter or digit)"
            )
        duplicates = sorted({name for name in domains if domains.count(name) > 1})
        if duplicates:
            problems.append(
                f"{', '.join(map(repr, duplicates))} listed more than once (list each domain once)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return domains


class ModelPrice(_Section):
    """List price of one model in USD per million tokens."""

    input: float = Field(strict=True, ge=0, description="USD per million input tokens.")
    output: float = Field(strict=True, ge=0, description="USD per million output tokens.")
    cache_read: float = Field(
        strict=True, ge=0, description="USD per million cache-read tokens (default 10% of input)."
    )
    cache_write: float = Field(
        strict=True, ge=0, description="USD per million cache-write tokens (default 125% of input)."
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_cache_prices(cls, data: object) -> object:
        """A new model may give only input and output; cache prices follow Anthropic's usual ratios."""
        if not isinstance(data, Mapping):
            return data
        given = data.get("input")
        price = float(given) if _is_number(given) else 0.0  # a missing or bad input is reported by itself
        return {"cache_read": round(price * 0.1, 6), "cache_write": round(price * 1.25, 6), **data}

    def cost_usd(
        self, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0, cache_write_tokens: int = 0
    ) -> float:
        """What these token counts cost at this price."""
        return (
            input_tokens * self.input
            + output_tokens * self.output
            + cache_read_tokens * self.cache_read
            + cache_write_tokens * self.cache_write
        ) / 1_000_000


def _default_pricing() -> dict[str, ModelPrice]:
    return {name: ModelPrice(**price) for name, price in DEFAULT_PRICING.items()}


class CostConfig(_Section):
    """Token cost tracking, the budget, and model selection."""

    enabled: bool = _flag(
        True, "Record token costs per task, agent and model (off: record_cost is accepted and not kept)."
    )
    budget_limit_usd: float | None = Field(
        default=None,
        strict=True,
        gt=0,
        description="Spending cap; no new claims once it is reached.",
    )
    warn_at_fraction: float = _number(0.8, "Warn once this fraction of the budget is spent.", gt=0, le=1)
    optimization_enabled: bool = _flag(
        True, "Pick each task's model from its complexity, history and budget."
    )
    default_model: str = Field(
        default="sonnet", min_length=1, description="Model used when nothing else decides."
    )
    model_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="Which model a task type or epic priority gets: keys domain:NAME (or a bare "
        "domain name) and priority:N.",
    )
    tier_sonnet_at: float = _number(
        0.2, "Complexity score from which a task gets sonnet rather than haiku.", ge=0, le=1
    )
    tier_opus_at: float = _number(0.55, "Complexity score from which a task gets opus.", ge=0, le=1)
    history_min_samples: int = _number(
        5, "Finished attempts a model needs in a domain and complexity band before its record counts.", ge=1
    )
    history_tolerance: float = _number(
        0.05, "How much lower a cheaper model's success rate may be and still be preferred.", ge=0, le=1
    )
    cheapest_at_fraction: float = _number(
        0.95, "Share of the budget spent from which every task gets the cheapest model.", gt=0, le=1
    )
    pricing: dict[str, ModelPrice] = Field(
        default_factory=_default_pricing,
        description="Model prices. Your entries merge over the built-in haiku, sonnet and opus prices; "
        "a new model needs input and output (cache prices default to 10% and 125% of input).",
    )

    @field_validator("pricing", mode="before")
    @classmethod
    def _merge_pricing(cls, value: object) -> object:
        if not isinstance(value, Mapping):
            return value
        merged: dict[object, object] = {name: dict(price) for name, price in DEFAULT_PRICING.items()}
        for name, entry in value.items():
            base = merged.get(name)
            merged[name] = (
                {**base, **entry} if isinstance(base, dict) and isinstance(entry, Mapping) else entry
            )
        return merged

    @field_validator("model_overrides")
    @classmethod
    def _check_override_keys(cls, overrides: dict[str, str]) -> dict[str, str]:
        for key in overrides:
            kind, _, value = key.partition(":")
            if kind == "priority" and not value.strip().lstrip("-").isdigit():
                raise _key_problem(
                    (key,), key, "a priority key needs a whole number after the colon, e.g. priority:0"
                )
            if kind == "domain" and not value.strip():
                raise _key_problem(
                    (key,), key, "a domain key needs a domain after the colon, e.g. domain:security"
                )
        return overrides

    @field_validator("tier_opus_at")
    @classmethod
    def _opus_above_sonnet(cls, value: float, info: ValidationInfo) -> float:
        sonnet = info.data.get("tier_sonnet_at")
        if sonnet is not None and value <= sonnet:
            raise ValueError(f"must be greater than cost.tier_sonnet_at ({sonnet:g})")
        return value

    @field_validator("cheapest_at_fraction")
    @classmethod
    def _cheapest_after_warning(cls, value: float, info: ValidationInfo) -> float:
        warn = info.data.get("warn_at_fraction")
        if warn is not None and value < warn:
            raise ValueError(f"must be at least cost.warn_at_fraction ({warn:g})")
        return value

    @model_validator(mode="after")
    def _budget_needs_costs(self) -> CostConfig:
        if not self.enabled and self.budget_limit_usd is not None:
            raise _key_problem(
                ("budget_limit_usd",),
                self.budget_limit_usd,
                "needs cost.enabled: true (with costs not recorded the budget could never be "
                "reached); remove the budget or turn cost tracking on",
            )
        return self

    @model_validator(mode="after")
    def _models_are_priced(self) -> CostConfig:
        named: list[tuple[tuple[str, ...], str]] = [(("default_model",), self.default_model)]
        named += [(("model_overrides", key), model) for key, model in self.model_overrides.items()]
        for key, model in named:
            if model not in self.pricing:
                raise _key_problem(
                    key,
                    model,
                    f"has no price in cost.pricing{_did_you_mean(model, self.pricing)}; use one of "
                    f"{', '.join(sorted(self.pricing))}, "
                    f"or add cost.pricing.{model} with input and output prices",
                )
        return self


class LeasesConfig(_Section):
    """Task leases, heartbeats and retries."""

    ttl_seconds: int = _number(300, "How long a claim lasts without a heartbeat.", ge=5, le=86400)
    heartbeat_interval_seconds: int = _number(
        60, "How often agents heartbeat; must be less than ttl_seconds.", ge=1, le=86400
    )
    max_attempts: int = _number(
        3, "Attempts (failures or expiries) before a task fails for good.", ge=1, le=100
    )
    backoff_base_seconds: float = _number(
        5.0, "Wait before the first retry; it doubles each attempt.", ge=0, le=86400
    )
    backoff_max_seconds: float = _number(600.0, "Longest wait between retries.", ge=0, le=604800)
    backoff_jitter: float = _number(0.2, "Random spread of each wait, as a fraction of it.", ge=0, le=1)
    agent_ttl_seconds: int = _number(
        900, "An agent silent for this long is considered gone.", ge=5, le=604800
    )

    @field_validator("heartbeat_interval_seconds")
    @classmethod
    def _heartbeat_below_ttl(cls, value: int, info: ValidationInfo) -> int:
        ttl = info.data.get("ttl_seconds")
        if ttl is not None and value >= ttl:
            raise ValueError(f"must be less than leases.ttl_seconds ({ttl}) so a live agent keeps its lease")
        return value

    @field_validator("backoff_max_seconds")
    @classmethod
    def _max_at_least_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("backoff_base_seconds")
        if base is not None and value < base:
            raise ValueError(f"must be at least leases.backoff_base_seconds ({base:g})")
        return value

    @field_validator("agent_ttl_seconds")
    @classmethod
    def _agent_ttl_above_heartbeat(cls, value: int, info: ValidationInfo) -> int:
        heartbeat = info.data.get("heartbeat_interval_seconds")
        if heartbeat is not None and value <= heartbeat:
            raise ValueError(f"must be greater than leases.heartbeat_interval_seconds ({heartbeat})")
        return value


class Config(BaseModel):
    """The whole configuration. Unknown top-level sections (from the older YokeFlow) are ignored."""

    model_config = ConfigDict(extra="ignore")

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    learning: LearningConfig = Field(default_factory=LearningConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    leases: LeasesConfig = Field(default_factory=LeasesConfig)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: object) -> object:
        """`parallel:` with every key commented out is YAML null: treat it as an empty section."""
        if isinstance(data, Mapping):
            return {key: {} if value is None and key in SECTIONS else value for key, value in data.items()}
        return data

    def database_url(self, root: Path) -> str:
        """The database URL with a relative SQLite path made absolute against `root` (the repository)."""
        return self.database.resolved_url(root)


SECTIONS: dict[str, type[BaseModel]] = {
    "database": DatabaseConfig,
    "server": ServerConfig,
    "parallel": ParallelConfig,
    "learning": LearningConfig,
    "cost": CostConfig,
    "leases": LeasesConfig,
}

# What is allowed, where the type and bounds alone do not say it well.
_ALLOWED = {
    "database.url": "must be sqlite:///relative/path, sqlite:////absolute/path or "
    "postgresql://user:password@host:5432/dbname",
    "server.project": "must be a project name, or null (then every request must name its project)",
    "parallel.target_branch": "must be a git branch name, or null for the repository's current branch",
    "parallel.test_command": "must be a shell command (a string), or null for no test gate",
    "learning.domains": "must be a non-empty list of unique lowercase names, e.g. [api, general]",
    "cost.budget_limit_usd": "must be a number greater than 0 (USD), or null for no limit",
    "cost.model_overrides": "must be a mapping of task type (domain:NAME, or a bare domain name) or "
    "epic priority (priority:N) to a model name, e.g. {domain:security: opus, priority:0: opus}",
    "cost.pricing": "must be a mapping of model name to {input, output, cache_read, cache_write} "
    "in USD per million tokens",
}


# ---------------------------------------------------------------------------------------------------
# Loading


def load_config(
    root: Path | None = None, *, path: Path | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Load `<root>/.yokeflow.yaml` (or the file at `path`) and apply `YOKEFLOW_<SECTION>_<KEY>` overrides.

    `root` defaults to the current directory. A missing default file means all defaults; an explicit
    `path` that does not exist is an error. `env` defaults to `os.environ`. Raises `ConfigError`.
    """
    folder = Path(root) if root is not None else Path.cwd()
    file = (Path(path) if path is not None else folder / CONFIG_FILENAME).absolute()
    data: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    if path is not None or file.exists():
        data = _read_file(file)
        where = f"in {file}"
        for name in SECTIONS:
            if name in data:
                sources[(name,)] = where
                if isinstance(data[name], Mapping):
                    sources.update({(name, str(key)): where for key in data[name]})

    overrides, problems = _env_overrides(os.environ if env is None else env)
    for (name, key), (variable, value) in overrides.items():
        section = data.get(name)
        section = {} if section is None else section
        if isinstance(section, Mapping):  # otherwise the section itself is reported as wrong
            data[name] = {**section, key: value}
            sources[(name, key)] = f"from environment variable {variable}"

    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(error, sources) for error in exc.errors(include_url=False)]
    if problems or config is None:
        raise ConfigError(
            _summarise(problems),
            fix=f"correct the values named, or remove them to use the defaults ({DOCS_HINT})",
        ) from None
    return config


def _read_file(file: Path) -> dict[str, Any]:
    """Read and parse the YAML file; only string top-level keys are kept (others cannot be ours)."""
    if not file.exists():
        raise ConfigError(
            f"config file {file} does not exist",
            fix=f"check the path, or leave it out to use {CONFIG_FILENAME} in the repository root",
        )
    if file.is_dir():
        raise ConfigError(
            f"config file {file} is a directory, not a file", fix="point to the YAML file itself"
        )
    try:
        raw = file.read_bytes()
    except PermissionError:
        raise ConfigError(
            f"cannot read config file {file}: permission denied", fix="make the file readable by this user"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {file}: {exc.strerror or exc}", fix="check the file"
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {file} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})",
            fix="save the file with UTF-8 encoding",
        ) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file {file} is not valid YAML: {_yaml_problem(exc, text)}",
            fix="correct the YAML there: indent with spaces (not tabs), "
            "and quote values containing ': ' or ' #'",
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {file} must hold a mapping of sections ({', '.join(f'{s}:' for s in SECTIONS)}) "
            f"at the top level, but it holds {_kind(loaded)}",
            fix=f"start the file with a section name such as `parallel:` and indent its keys ({DOCS_HINT})",
        )
    return {key: value for key, value in loaded.items() if isinstance(key, str)}


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return str(exc)
    mark = exc.problem_mark
    lines = text.splitlines()
    shown = f": {lines[mark.line].strip()!r}" if mark.line < len(lines) and lines[mark.line].strip() else ""
    context = f" ({exc.context})" if exc.context else ""
    return f"{exc.problem}{context} at line {mark.line + 1}, column {mark.column + 1}{shown}"


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[tuple[str, str], tuple[str, object]], list[str]]:
    """Collect `YOKEFLOW_<SECTION>_<KEY>` values; variables not naming one of our sections are left alone."""
    overrides: dict[tuple[str, str], tuple[str, object]] = {}
    problems: list[str] = []
    for variable in sorted(env):
        rest = variable.upper().removeprefix(ENV_PREFIX)
        if rest == variable.upper():
            continue
        section = next((name for name in SECTIONS if rest.startswith(name.upper() + "_")), None)
        if section is None:
            continue
        key = rest[len(section) + 1 :].lower()
        fields = SECTIONS[section].model_fields
        if key not in fields:
            valid = ", ".join(_env_name(section, name) for name in fields)
            hint = _did_you_mean(key, fields, functools.partial(_env_name, section))
            problems.append(f"environment variable {variable} names no setting{hint}; valid ones are {valid}")
            continue
        try:
            overrides[(section, key)] = (variable, _parse_env_value(env[variable], fields[key]))
        except yaml.YAMLError as exc:
            problems.append(
                f"environment variable {variable} = {_show(env[variable])}: not a valid YAML value "
                f"({getattr(exc, 'problem', None) or exc}); write it like a YAML value, e.g. 42, true, [a, b]"
            )
    return overrides, problems


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _parse_env_value(raw: str, field: FieldInfo) -> object:
    """Text settings take the raw string (so `pytest -k "a: b"` survives); others are parsed as YAML."""
    inner, optional = _unwrap_optional(field.annotation)
    if inner is str or get_origin(inner) is Literal:
        return None if optional and raw.strip() in ("", "null", "Null", "NULL", "~") else raw
    return yaml.safe_load(raw)


# ---------------------------------------------------------------------------------------------------
# Error messages


def _describe(error: ErrorDetails, sources: Mapping[tuple[Any, ...], str]) -> str:
    """One line for one validation problem: key path, value, origin, and what is allowed."""
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value: object = error.get("input")
    if kind == "config_key":
        loc, value, text = loc + tuple(ctx["key"]), ctx["value"], str(ctx["message"])
    elif kind in ("extra_forbidden", "invalid_key"):
        known = _known_keys(loc[:-1])
        text = f"unknown key{_did_you_mean(str(loc[-1]), known)}; valid keys: {', '.join(known)}"
        if kind == "invalid_key":
            value = None
    elif kind == "value_error":
        text = str(ctx.get("error", error["msg"]))
    elif kind in ("model_type", "model_attributes_type", "dict_type") and len(loc) == 1:
        text = f"must be a mapping of keys: {', '.join(_known_keys(loc))}"
    elif kind == "missing":
        text = "is required; it " + _allowed_at(loc)
    else:
        text = _allowed_at(loc)
    origin = sources.get(loc[:2]) or sources.get(loc[:1]) or "default value"
    shown = "" if kind in ("missing", "invalid_key") else f" = {_show(value)}"
    return f"{_key_path(loc)}{shown} ({origin}): {text}"


def _summarise(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"invalid configuration: {problems[0]}"
    return f"invalid configuration, {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    if len(loc) == 1 and loc[0] in SECTIONS:
        return list(SECTIONS[loc[0]].model_fields)
    if loc[:2] == ("cost", "pricing"):
        return list(ModelPrice.model_fields)
    return []


def _allowed_at(loc: tuple[Any, ...]) -> str:
    """What the setting at `loc` allows (a nested location is described by its setting)."""
    if loc[:2] == ("cost", "pricing") and len(loc) == 4 and loc[3] in ModelPrice.model_fields:
        return "must be a number of at least 0 (USD per million tokens)"
    if len(loc) >= 2 and loc[0] in SECTIONS and loc[1] in SECTIONS[loc[0]].model_fields:
        return _allowed(f"{loc[0]}.{loc[1]}", SECTIONS[loc[0]].model_fields[loc[1]])
    return "has an invalid value"


def _allowed(path: str, field: FieldInfo) -> str:
    """Say in words what a field accepts, from its type and bounds."""
    if path in _ALLOWED:
        return _ALLOWED[path]
    inner, optional = _unwrap_optional(field.annotation)
    if get_origin(inner) is Literal:
        text = "must be one of " + ", ".join(str(choice) for choice in get_args(inner))
    elif inner is bool:
        text = "must be true or false"
    elif inner in (int, float):
        text = f"must be {'a whole number' if inner is int else 'a number'}{_bounds(path, field)}"
    elif inner is str:
        text = "must be a non-empty string"
    else:
        text = "has an invalid value"
    return text + " or null" if optional else text


def _bounds(path: str, field: FieldInfo) -> str:
    unit = next(
        (u for end, u in (("_seconds", " seconds"), ("_ms", " milliseconds")) if path.endswith(end)), ""
    )
    low = next((f"at least {m.ge:g}" for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    low = next((f"greater than {m.gt:g}" for m in field.metadata if isinstance(m, annotated_types.Gt)), low)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    if low is None:
        return "" if high is None else f" of at most {high:g}{unit}"
    if high is None:
        return f" {'of ' if low.startswith('at least') else ''}{low}{unit}"
    if low.startswith("at least"):
        return f" between {low.removeprefix('at least ')} and {high:g}{unit}"
    return f" {low} and at most {high:g}{unit}"


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        return rest[0], True
    return annotation, False


def _key_problem(key: tuple[str, ...], value: object, message: str) -> PydanticCustomError:
    """An error about one key of a section, raised from a whole-section check."""
    return PydanticCustomError("config_key", "{message}", {"key": key, "value": value, "message": message})


def _did_you_mean(word: str, choices: Iterable[str], spell: Callable[[str], str] = str) -> str:
    """A " (did you mean X?)" hint for a misspelt or shortened name, or ""."""
    names = list(choices)
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    match = close or [name for name in names if word and name.startswith(word)]
    return f" (did you mean {spell(match[0])}?)" if match else ""


def _key_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":
            path += f".{part}" if path else str(part)
    return path


def _show(value: object) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {_show(value)}"
    return f"the value {_show(value)}"


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------------
# The default file


def _dump_key(key: str, value: object) -> list[str]:
    """`key: value` as YAML lines: scalars plain, lists and mappings of scalars in flow style."""
    if isinstance(value, dict | list):
        dumped = yaml.safe_dump({key: value}, default_flow_style=None, sort_keys=False, width=200)
        return dumped.rstrip("\n").splitlines()
    scalar = yaml.safe_dump(value, default_flow_style=True).removesuffix("\n").removesuffix("\n...")
    return [f"{key}: {scalar}"]


def render_default_config() -> str:
    """A commented `.yokeflow.yaml` with every key at its default (it loads back to `Config()`)."""
    defaults = Config().model_dump(mode="json")
    lines = [
        "# YokeFlow Coordinator configuration (docs/configuration.md).",
        "# Every key is optional: delete one to use its default. Environment variables",
        "# YOKEFLOW_<SECTION>_<KEY> (e.g. YOKEFLOW_LEASES_TTL_SECONDS=600) override this file.",
        "# Sections of the older YokeFlow (models, timing, docker, ...) may stay here; they are ignored.",
    ]
    for name, section in SECTIONS.items():
        lines += ["", f"# {section.__doc__}", f"{name}:"]
        for key, field in section.model_fields.items():
            allowed = _allowed(f"{name}.{key}", field).removeprefix("must be ").removeprefix("has ")
            comment = f"{field.description} Allowed: {allowed}."
            lines += ["  # " + line for line in textwrap.wrap(comment, 96)]
            lines += ["  " + line for line in _dump_key(key, defaults[name][key])]
    return "\n".join(lines) + "\n"
