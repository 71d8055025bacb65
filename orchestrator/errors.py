"""Errors a user can act on. The CLI prints them as one clear message, without a traceback."""


class RethinkError(Exception):
    """Base class: the message names the file or key at fault and how to fix it."""


class ConfigError(RethinkError):
    """A configuration value or key is invalid (unknown key, wrong type, out of range)."""


class ManifestError(RethinkError):
    """A dataset folder or metadata file does not have the expected layout or content."""


class AudioError(RethinkError):
    """One audio file cannot be used (missing, empty, corrupt, unreadable); the run goes on without it."""


class StorageError(RethinkError):
    """A storage URI is malformed, unreachable, or not writable."""
