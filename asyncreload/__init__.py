"""asyncreload: watch files with kernel events where they work and stat polling where they don't.

Paths on FUSE and network file systems (sshfs, NFS, SMB, Docker Desktop and WSL2 shares) are
stat-polled, because a change made on the far side of such a mount raises no event here; every
other path gets kernel events (inotify, read directly on Linux; watchfiles elsewhere). Both feed
one debounced stream of batches.

>>> import asyncreload
>>> sorted(asyncreload.ChangeKind.__members__)
['ADDED', 'DELETED', 'MODIFIED']
"""

from ._exceptions import (
    AsyncReloadError,
    CommandError,
    CommandNotExecutableError,
    CommandNotFoundError,
    ConfigError,
    PathNotFoundError,
    WatchPathError,
)
from ._run import (
    ManagedProcess,
    OnExit,
    ProcessRunner,
    StopResult,
    open_managed_process,
    run_process,
)
from ._serve import ReloadStrategy, ServeConfig, ServeError, serve, serve_async
from ._types import Backend, Change, ChangeKind, Source
from ._watch import ChangeBatch, ChangeStream, Target, awatch, explain, open_watcher
from .filters import DEFAULT_IGNORE_DIRS, DEFAULT_IGNORE_GLOBS, PathFilter

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_IGNORE_DIRS",
    "DEFAULT_IGNORE_GLOBS",
    "AsyncReloadError",
    "Backend",
    "Change",
    "ChangeBatch",
    "ChangeKind",
    "ChangeStream",
    "CommandError",
    "CommandNotExecutableError",
    "CommandNotFoundError",
    "ConfigError",
    "ManagedProcess",
    "OnExit",
    "PathFilter",
    "PathNotFoundError",
    "ProcessRunner",
    "ReloadStrategy",
    "ServeConfig",
    "ServeError",
    "Source",
    "StopResult",
    "Target",
    "WatchPathError",
    "__version__",
    "awatch",
    "explain",
    "open_managed_process",
    "open_watcher",
    "run_process",
    "serve",
    "serve_async",
]
