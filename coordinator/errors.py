"""Errors that reach people: each names what was wrong and how to fix it."""

from __future__ import annotations


class YokeflowError(Exception):
    """Base of every error the coordinator reports to a caller."""

    code = "error"

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.message}. Fix: {self.fix}" if self.fix else self.message

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, "fix": self.fix}


class InvalidInput(YokeflowError):
    """An argument, a field of a file or a config value was wrong."""

    code = "invalid_input"

    def __init__(self, field: str, problem: str, *, fix: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}", fix=fix)


class NotFound(YokeflowError):
    """A referenced object does not exist (or is not visible to the caller)."""

    code = "not_found"


class StateConflict(YokeflowError):
    """The object exists but is not in a state that allows the operation."""

    code = "state_conflict"


class CycleError(InvalidInput):
    """An edge would close a dependency cycle."""

    code = "cycle"

    def __init__(self, cycle: list[int], *, field: str = "depends_on") -> None:
        self.cycle = cycle
        path = " -> ".join(str(node) for node in cycle)
        super().__init__(
            field,
            f"this dependency would close the cycle {path}",
            fix="drop one of these dependencies (soft ones order work too, so they count), "
            "or split a task so the work no longer goes round in a circle",
        )


class LeaseLost(YokeflowError):
    """The lease presented is not the task's current lease; nothing was changed."""

    code = "lease_lost"


class PermissionDenied(YokeflowError):
    """The caller's token does not allow this operation."""

    code = "permission_denied"


class ConfigError(YokeflowError):
    """The configuration file or an environment override is invalid."""

    code = "config_error"


class StoreError(YokeflowError):
    """The database cannot be used as asked."""

    code = "store_error"


class UnsupportedDatabase(StoreError):
    code = "unsupported_database"


class DatabaseUnavailable(StoreError):
    code = "database_unavailable"


class DatabaseLocked(StoreError):
    code = "database_locked"


class SchemaMismatch(StoreError):
    code = "schema_mismatch"
