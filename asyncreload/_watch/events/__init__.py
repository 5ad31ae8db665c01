"""The event stream: kernel events for the targets that get them, from one of two backends.

* ``inotify`` (:mod:`.inotify`), the default on Linux: reads inotify itself and sleeps
  on its file descriptor, so an idle watcher does no work at all.
* ``watchfiles`` (:mod:`.watchfiles`), the default elsewhere: watchfiles' Rust backend,
  whose thread wakes every few milliseconds to look for events. On Linux it is there on request
  (``ASYNCRELOAD_EVENTS_BACKEND=watchfiles``).

Either way, a target the kernel won't watch (the inotify limits) falls back to the stat poller
with one warning that names the sysctl to raise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from ..._types import Change
from ...filters import PathFilter
from ..config import EventsBackend
from ..plan import Target

__all__ = ["FallbackFn", "probe", "watch_events"]

FallbackFn = Callable[[Target, str, MemoryObjectSendStream[list[Change]]], Awaitable[None]]
"""Hands a target to the stat poller, with the reason and the event source's stream (for the
poller to clone); returns once the poller's first sweep is done."""

WatchTargetFn = Callable[..., Coroutine[Any, Any, None]]


def _watch_target(backend: EventsBackend) -> WatchTargetFn:
    # Imported on use: the process that watches natively never loads watchfiles' Rust module.
    if backend == "inotify":
        from .inotify import watch_target
    else:
        from .watchfiles import watch_target
    return watch_target


async def watch_events(
    targets: list[Target],
    path_filter: PathFilter,
    send: MemoryObjectSendStream[list[Change]],
    fallback: FallbackFn,
    *,
    backend: EventsBackend,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Watch every event target until cancelled; started once all their watches are in place."""
    watch_target = _watch_target(backend)
    async with send, anyio.create_task_group() as tg:
        for target in targets:
            await tg.start(watch_target, target, path_filter, send, fallback)
        task_status.started()


def probe(target: Target, path_filter: PathFilter, backend: EventsBackend) -> Target:
    """``target`` as ``backend`` would watch it: its watches are laid for real and dropped again,
    so a target that would hit the watch limit comes back polled, with the reason. Blocking."""
    if backend == "inotify":
        from .inotify import probe as probe_with
    else:
        from .watchfiles import probe as probe_with
    return probe_with(target, path_filter)
