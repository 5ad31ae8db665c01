"""The errors asyncreload raises.

Every error is an :class:`AsyncReloadError` and also the builtin it refines, so callers can
catch either::

    AsyncReloadError (Exception)
     ├── ConfigError (ValueError)           a bad option or setting
     ├── WatchPathError (OSError)           a path that can't be watched
     │    └── PathNotFoundError (FileNotFoundError)
     └── CommandError (OSError)             a managed command that can't be started
          ├── CommandNotFoundError (FileNotFoundError)
          └── CommandNotExecutableError (PermissionError)
"""

from __future__ import annotations

__all__ = [
    "AsyncReloadError",
    "CommandError",
    "CommandNotExecutableError",
    "CommandNotFoundError",
    "ConfigError",
    "PathNotFoundError",
    "WatchPathError",
]


class AsyncReloadError(Exception):
    """Base class of every error asyncreload raises on purpose."""


class ConfigError(AsyncReloadError, ValueError):
    """An option or setting has a value asyncreload can't use."""


class WatchPathError(AsyncReloadError, OSError):
    """A path given to watch can't be watched."""


class PathNotFoundError(WatchPathError, FileNotFoundError):
    """A path given to watch does not exist."""


class CommandError(AsyncReloadError, OSError):
    """A managed command can't be started."""


class CommandNotFoundError(CommandError, FileNotFoundError):
    """The managed command is not on PATH or does not exist."""


class CommandNotExecutableError(CommandError, PermissionError):
    """The managed command exists but can't be executed."""
