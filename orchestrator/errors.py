"""Errors a user can act on. The CLI prints them as one clear message, without a traceback."""

import re

# Ray re-raises a worker's exception wrapped in its own error type, whose text holds ours as
# "orchestrator.errors.<Name>Error: <message>" (the cause object itself is not always kept).
_WRAPPED = re.compile(r"orchestrator\.(?:\w+\.)?\w+Error: (.+)")


class RethinkError(Exception):
    """Base class: the message names the file or key at fault and how to fix it."""


class ConfigError(RethinkError):
    """A configuration value or key is invalid (unknown key, wrong type, out of range)."""


class ConfigValueError(ConfigError, ValueError):
    """A config class's own check failed (``__post_init__``). Also a ValueError, so that pydantic collects it
    with the plan's other problems instead of stopping at it; only the config classes raise it (code that
    catches ValueError elsewhere never sees a ConfigError it should let through).

    ``problems``: every problem the check found, each starting with ``section`` (the section's usual key path,
    e.g. ``optim``), which a caller that knows where the section really is (``plan.random_optim``) replaces."""

    def __init__(self, problems: str | list[str], section: str = ""):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.section = section
        super().__init__("; ".join(self.problems))


class ManifestError(RethinkError):
    """A dataset folder or metadata file does not have the expected layout or content."""


class DatasetError(RethinkError):
    """A preprocessed dataset version is damaged (an unreadable Parquet file, rows missing against its card)."""


class AudioError(RethinkError):
    """One audio file cannot be used (missing, empty, corrupt, unreadable); the run goes on without it."""


class StorageError(RethinkError):
    """A storage URI is malformed, unreachable, or not writable."""


def user_message(exc: BaseException) -> str | None:
    """The message to show for ``exc``: its own text for a RethinkError, the wrapped RethinkError's text when
    Ray re-raised one from a worker, else None (a bug: let the traceback through)."""
    if isinstance(exc, RethinkError):
        return str(exc)
    cause = getattr(exc, "cause", None)
    if isinstance(cause, RethinkError):
        return str(cause)
    found = _WRAPPED.findall(str(exc))
    return found[-1] if found else None
