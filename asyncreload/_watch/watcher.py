"""The watcher: plan the targets, start both sources and the merge in one task group.

:func:`open_watcher` is the whole machine; :func:`awatch` and :func:`explain` are views of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import replace
from functools import partial

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from ._config import WatchSettings, resolve
from ._events import probe as probe_target
from ._events import watch_events
from ._exceptions import PathNotFoundError
from ._merge import ChangeBatch, ChangeStream, merge
from ._mounts import poll_reason, read_mounts
from ._plan import Target, normalise, plan
from ._stat import Sweeper
from ._stat import poll as poll_tree  # open_watcher has a parameter named poll
from ._types import Backend, Change
from .filters import PathFilter

__all__ = ["awatch", "explain", "open_watcher"]

log = logging.getLogger("asyncreload.watch")

StrPath = str | os.PathLike[str]


def _existing(paths: Iterable[StrPath], what: str) -> list[str]:
    resolved = []
    for p in paths:
        path = normalise(os.fspath(p))
        try:
            os.stat(path)
        except FileNotFoundError:
            raise PathNotFoundError(f"{what} does not exist: {os.fspath(p)}") from None
        except OSError:
            pass  # a dead mount or a denied directory: the sources warn and carry on
        resolved.append(path)
    return resolved


def _plan(paths: Iterable[StrPath], settings: WatchSettings) -> list[Target]:
    roots = _existing(paths, "path to watch") or [normalise(os.getcwd())]
    return plan(
        roots,
        read_mounts(),
        poll=_existing(settings.poll, "--poll path"),
        events=_existing(settings.events, "--events path"),
        force_polling=settings.force_polling,
    )


def _workers(target: Target, settings: WatchSettings) -> int:
    # Several threads only pay off where each stat is a round trip to a daemon or a server.
    remote = target.fstype is not None and poll_reason(target.fstype) is not None
    return settings.stat_workers if remote else 1


@contextlib.asynccontextmanager
async def open_watcher(
    *paths: StrPath,
    poll: Iterable[StrPath] = (),
    events: Iterable[StrPath] = (),
    force_polling: bool | None = None,
    poll_interval: float | None = None,
    poll_cpu: float | None = None,
    debounce: float | None = None,
    max_wait: float | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    default_ignores: bool = True,
    path_filter: PathFilter | None = None,
) -> AsyncIterator[ChangeStream]:
    """Watch ``paths`` (default: the current directory); yield a stream of change batches.

    ::

        async with open_watcher("src", poll=["/mnt/share"]) as changes:
            async for batch in changes:
                for change in batch:
                    print(change.kind, change.path, change.source)

    Paths on FUSE and network file systems (from the mount table), paths in ``poll``, and
    everything when ``force_polling`` is set are stat-polled every ``poll_interval`` seconds
    (less often when a sweep is slow: sweeping takes at most half the time, and with
    ``poll_cpu``, at most that percentage of one core); the rest get kernel events, except
    paths in ``events``, which always do. A batch is handed
    out ``debounce`` seconds after its last change or ``max_wait`` seconds after its first.
    Arguments left as None come from the environment (``ASYNCRELOAD_*``) or the defaults.

    The context is entered once every watch is in place and the first sweep is done, so any
    change made after that is reported. Leaving it stops everything.

    Raises :class:`~asyncreload.PathNotFoundError` for a path that does not exist and
    :class:`~asyncreload.ConfigError` for a bad setting.
    """
    settings = resolve(
        force_polling=force_polling,
        poll=[os.fspath(p) for p in poll],
        events=[os.fspath(p) for p in events],
        poll_interval=poll_interval,
        poll_cpu=poll_cpu,
        debounce=debounce,
        max_wait=max_wait,
    )
    if path_filter is None:
        path_filter = PathFilter(include=include, exclude=exclude, default_ignores=default_ignores)
    targets = await anyio.to_thread.run_sync(_plan, paths, settings)
    for t in targets:
        log.debug("%s: %s (%s)", t.path, t.backend.value, t.reason)

    stream = ChangeStream(debounce=settings.debounce, max_wait=settings.max_wait)
    send, receive = anyio.create_memory_object_stream[list[Change]](64)
    stat_limiter = anyio.CapacityLimiter(max(settings.stat_workers, 1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(merge, receive, stream)

        async def start_poller(
            target: Target, sources: MemoryObjectSendStream[list[Change]]
        ) -> None:
            sweeper = Sweeper(
                target.path, path_filter, excludes=target.excludes, filter_root=target.root
            )
            await tg.start(
                partial(
                    poll_tree,
                    sweeper,
                    sources.clone(),
                    interval=settings.poll_interval,
                    workers=_workers(target, settings),
                    cpu_budget=None if settings.poll_cpu is None else settings.poll_cpu / 100,
                    limiter=stat_limiter,
                )
            )

        async def fallback(
            target: Target, reason: str, sources: MemoryObjectSendStream[list[Change]]
        ) -> None:
            # The event source's own stream is cloned: ours is closed once everything started,
            # and a target may fall back long after that.
            await start_poller(replace(target, backend=Backend.STAT, reason=reason), sources)

        async with anyio.create_task_group() as starting:
            # Sweeping a big polled tree and laying inotify watches on a big local one both take
            # a while: do them side by side.
            for target in targets:
                if target.backend is Backend.STAT:
                    starting.start_soon(start_poller, target, send)
            event_targets = [t for t in targets if t.backend is Backend.EVENTS]
            if event_targets:
                starting.start_soon(
                    tg.start,
                    partial(watch_events, backend=settings.events_backend),
                    event_targets,
                    path_filter,
                    send.clone(),
                    fallback,
                )
        send.close()  # the sources hold clones; the merge ends when the last one closes
        try:
            yield stream
        finally:
            tg.cancel_scope.cancel()


async def awatch(*paths: StrPath, **options: object) -> AsyncGenerator[ChangeBatch, None]:
    """Iterate change batches: ``async for batch in awatch("src"): ...``.

    Takes the same arguments as :func:`open_watcher`. The generator holds running tasks between
    batches, so close it deterministically when you stop early: wrap it in
    ``contextlib.aclosing`` (or prefer ``async with open_watcher(...)``, which can't be misused).
    """
    async with open_watcher(*paths, **options) as changes:  # type: ignore[arg-type]
        async for batch in changes:
            try:
                yield batch
            except GeneratorExit:
                # Closed by the consumer: leave the watcher's task group normally, rather than
                # let GeneratorExit escape it wrapped in an exception group.
                return


def explain(
    *paths: StrPath,
    poll: Iterable[StrPath] = (),
    events: Iterable[StrPath] = (),
    force_polling: bool | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    default_ignores: bool = True,
    probe: bool = True,
) -> list[Target]:
    """The targets :func:`open_watcher` would make for these arguments, with the reason for each.

    With ``probe`` (the default), event targets are tried for real: their inotify watches are
    laid and dropped again by the event backend the watcher would use, so a target that would hit
    the watch limit shows as polled, as it would be. Blocking; call it from a thread in async code.
    """
    settings = resolve(
        force_polling=force_polling,
        poll=[os.fspath(p) for p in poll],
        events=[os.fspath(p) for p in events],
    )
    path_filter = PathFilter(include=include, exclude=exclude, default_ignores=default_ignores)
    targets = _plan(paths, settings)
    if not probe:
        return targets
    return [
        probe_target(t, path_filter, settings.events_backend) if t.backend is Backend.EVENTS else t
        for t in targets
    ]
