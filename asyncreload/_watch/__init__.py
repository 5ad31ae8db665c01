"""The watcher: where to look, two ways of looking, one merge.

``mounts`` reads the mount table and ``plan`` splits the watched roots into targets by it (FUSE
and network mounts to the stat poller, the rest to kernel events); ``walk`` is the one rule for
going down a tree. ``poll`` is the stat poller, ``events/`` the kernel-event sources (our own
inotify reader, and watchfiles' elsewhere); ``merge`` debounces what both say into one stream of
batches; ``watcher`` runs it all in one task group and re-plans when the mount table changes.
``config`` holds the settings and their environment variables.
"""

from .config import BACKEND_VAR, DEFAULTS, ENVIRONMENT, QUANTITIES, resolve
from .events.inotify_bindings import inotify_limits
from .merge import (
    BURST_DEBOUNCE,
    BURST_PATHS,
    ChangeBatch,
    ChangeStream,
    fold,
    relative_to,
    summarize,
)
from .mounts import cache_delay
from .options import OPTIONS, Option, StrPath, WatcherOptions, keywords_from, take_watcher_options
from .paths import absolute, current_directory, is_within
from .plan import Target
from .watcher import awatch, explain, open_watcher

# What the other rooms (run, serve, the CLI) may use: nothing else of the watcher's.
__all__ = [
    "BACKEND_VAR",
    "BURST_DEBOUNCE",
    "BURST_PATHS",
    "DEFAULTS",
    "ENVIRONMENT",
    "OPTIONS",
    "QUANTITIES",
    "ChangeBatch",
    "ChangeStream",
    "Option",
    "StrPath",
    "Target",
    "WatcherOptions",
    "absolute",
    "awatch",
    "cache_delay",
    "current_directory",
    "explain",
    "fold",
    "inotify_limits",
    "is_within",
    "keywords_from",
    "open_watcher",
    "relative_to",
    "resolve",
    "summarize",
    "take_watcher_options",
]
