"""The watchfiles event source: kernel events through watchfiles' Rust backend, ``RustNotify``.

The event stream off Linux, and on Linux when ``ASYNCRELOAD_EVENTS_BACKEND=watchfiles`` asks for
it (the native :mod:`._events_inotify` is the default there). RustNotify's thread wakes every
:data:`STEP_MS` even when nothing happens; that is the price of its portability.

A target is not handed to watchfiles whole. Its top directory, and every directory on the way
down to a nested target watched the other way (a FUSE mount three levels down), are watched flat;
their other subdirectories recursively. So the watcher never walks into a polled mount (walking
a FUSE tree to add inotify watches costs seconds and still sees nothing from the far side), and
ignored directories at those levels (``node_modules``, ``.venv``, ``.git``) cost no watches. When
a new directory appears at a flat level, the watches are laid again to take it in.

If the kernel refuses the watches (the inotify watch limit), the target falls back to the stat
poller with one warning that names the sysctl to raise.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream
from watchfiles._rust_notify import RustNotify

from ._inotify import WatchLimitError, limit_message
from ._plan import Target, is_within
from ._types import Backend, Change, ChangeKind, Source
from .filters import PathFilter

if TYPE_CHECKING:
    from ._events import FallbackFn

__all__ = ["Layout", "layout", "probe", "watch_target"]

log = logging.getLogger("asyncreload.events")

STEP_MS = 10
"""How long watchfiles waits for quiet before handing a group of events over. Kept short: the
merge does the real debouncing, so this only bounds how often the Rust thread wakes."""

_KINDS = {1: ChangeKind.ADDED, 2: ChangeKind.MODIFIED, 3: ChangeKind.DELETED}


@dataclass(frozen=True)
class Layout:
    """How one target is laid out for watchfiles."""

    flat: tuple[str, ...]
    """Directories watched without their subdirectories."""
    recursive: tuple[str, ...]
    """Directories (or a file) watched with everything below them."""


def layout(target: Target, path_filter: PathFilter) -> Layout:
    """Lay out ``target``'s watches (reads the directories on the flat levels; blocking)."""
    top = target.path
    if not os.path.isdir(top):
        return Layout(flat=(), recursive=(top,))
    flat = {top}
    for excluded in target.excludes:
        parent = posixpath.dirname(excluded)
        while is_within(parent, top) and parent not in flat:
            flat.add(parent)
            parent = posixpath.dirname(parent)
    prefix = len(target.root.rstrip("/")) + 1
    recursive = []
    pruned = False
    for directory in sorted(flat):
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            os.scandir(directory) as it,
        ):
            for entry in it:
                child = entry.path
                if child in flat or child in target.excludes:
                    continue
                with contextlib.suppress(OSError):
                    if not entry.is_dir():
                        continue
                    if path_filter.walks(child[prefix:]):
                        recursive.append(child)
                    else:
                        pruned = True
    if not target.excludes and not pruned:
        # Nothing to keep out: one recursive watch on the top. It takes in new directories by
        # itself, and one watch thread wakes half as often as two.
        return Layout(flat=(), recursive=(top,))
    return Layout(flat=tuple(sorted(flat)), recursive=tuple(sorted(recursive)))


def _open(paths: tuple[str, ...], *, recursive: bool) -> RustNotify | None:
    if not paths:
        return None
    try:
        # ignore_permission_denied=False: with True, watchfiles also swallows the watch-limit
        # error, and we'd silently watch only part of the tree.
        return RustNotify(list(paths), False, False, 0, recursive, False)
    except FileNotFoundError:
        raise
    except PermissionError as e:
        # A directory we can't read (a container's data volume, say). Watch the rest and say so;
        # the limit check above already passed for everything up to that directory.
        log.warning("%s; what can't be read is not watched", _rust_error_text(e))
        return RustNotify(list(paths), False, False, 0, recursive, True)
    except OSError as e:
        text = str(e)
        if e.errno in (errno.ENOSPC, errno.EMFILE) or "limit" in text or "Too many" in text:
            raise WatchLimitError(errno.ENOSPC, text) from e
        raise


def _rust_error_text(e: OSError) -> str:
    # 'Permission denied (os error 13) about ["/srv/data"]' -> '/srv/data: permission denied'
    text = str(e)
    if ' about ["' in text:
        what, _, rest = text.partition(' about ["')
        path = rest.split('"', 1)[0]
        return f"{path}: {what.split(' (os error')[0].lower()}"
    return text


class _TargetWatch:
    """The event stream of one target: converts, filters, and re-lays watches on new dirs."""

    def __init__(
        self, target: Target, path_filter: PathFilter, send: MemoryObjectSendStream[list[Change]]
    ) -> None:
        self.target = target
        self.filter = path_filter
        self.send = send
        self._prefix = len(target.root.rstrip("/")) + 1
        self.layout = Layout((), ())

    def convert(self, raw: set[tuple[int, str]]) -> tuple[list[Change], list[str]]:
        """Our changes from watchfiles', and the new directories among them (to look into)."""
        changes = []
        new_dirs = []
        target = self.target
        for code, path in raw:
            kind = _KINDS.get(code)
            if kind is None or not is_within(path, target.path):
                continue
            if any(is_within(path, x) for x in target.excludes):
                continue
            relpath = path[self._prefix :]
            if kind is ChangeKind.ADDED and os.path.isdir(path):
                if not self.filter.walks(relpath):
                    continue
                new_dirs.append(path)
            if self.filter(relpath):
                changes.append(Change(kind, path, Source.EVENTS))
        return changes, new_dirs

    def contents(self, tops: Iterable[str]) -> list[Change]:
        """Everything already inside new directories, reported as added.

        A directory's watch is added only after the event of its creation, so files created in
        it in between raise no event of their own (a ``git checkout`` or an unpacked archive
        does this all the time). Looking inside once the watch is there catches them; what is
        also reported by an event is folded into one entry by the merge.
        """
        changes = []
        for top in tops:
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = [d for d in dirnames if self.filter.walks(
                    posixpath.join(dirpath, d)[self._prefix :])]  # fmt: skip
                for name in filenames + dirnames:
                    path = posixpath.join(dirpath, name)
                    if self.filter(path[self._prefix :]):
                        changes.append(Change(ChangeKind.ADDED, path, Source.EVENTS))
        return changes

    async def run(
        self,
        fallback: FallbackFn,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        vanished = 0
        while True:
            old = self.layout
            self.layout = await anyio.to_thread.run_sync(layout, self.target, self.filter)
            try:
                notifiers = await anyio.to_thread.run_sync(self._open_all)
            except FileNotFoundError:
                # A directory vanished between listing and watching: lay the watches again. If
                # the target itself keeps vanishing, the poller copes with that better.
                vanished += 1
                if vanished < 5:
                    continue
                reason = f"{self.target.path} keeps disappearing"
                log.warning("%s; polling it instead", reason)
            except WatchLimitError as e:
                reason = limit_message()
                log.warning("%s: %s; polling it instead", self.target.path, reason)
                log.debug("watchfiles said: %s", e)
            else:
                vanished = 0
                reason = ""
            if reason:
                # The poller's first sweep is done when fallback returns: only then is this
                # target being watched, and only then may the watcher say it is ready.
                await fallback(self.target, reason, self.send)
                if not started:
                    task_status.started()
                return
            with contextlib.ExitStack() as stack:
                for n in notifiers:
                    stack.enter_context(n)
                if not started:
                    task_status.started()
                    started = True
                else:
                    fresh = set(self.layout.recursive) - set(old.recursive)
                    added = await anyio.to_thread.run_sync(self.contents, fresh)
                    if added:
                        await self.send.send(added)
                await self._pump(notifiers)

    def _open_all(self) -> list[RustNotify]:
        opened = []
        try:
            for paths, recursive in ((self.layout.flat, False), (self.layout.recursive, True)):
                n = _open(paths, recursive=recursive)
                if n is not None:
                    opened.append(n)
        except BaseException:
            for n in opened:
                n.close()
            raise
        return opened

    async def _pump(self, notifiers: list[RustNotify]) -> None:
        """Forward events until a new directory means the watches must be laid again."""
        stop = threading.Event()
        # The watch threads live as long as the watcher: they get tokens of their own, so they
        # never starve the default limiter that the embedding app's to_thread calls share.
        limiter = anyio.CapacityLimiter(len(notifiers))
        async with anyio.create_task_group() as tg:
            tg.start_soon(_set_when_cancelled, stop)
            for notifier in notifiers:
                tg.start_soon(self._pump_one, notifier, stop, limiter, tg.cancel_scope)

    async def _pump_one(
        self,
        notifier: RustNotify,
        stop: threading.Event,
        limiter: anyio.CapacityLimiter,
        scope: anyio.CancelScope,
    ) -> None:
        while True:
            # Not cancellable in the thread; _set_when_cancelled makes it return within a step.
            raw = await anyio.to_thread.run_sync(
                notifier.watch, STEP_MS, STEP_MS, 0, stop, limiter=limiter
            )
            if isinstance(raw, str):  # "stop" (or "signal"/"timeout", which we don't ask for)
                return
            changes, new_dirs = self.convert(raw)
            if changes:
                await self.send.send(changes)
            if any(posixpath.dirname(d) in self.layout.flat for d in new_dirs):
                scope.cancel()  # lay the watches again; run() then looks inside the new ones
                return
            if new_dirs:
                inside = await anyio.to_thread.run_sync(self.contents, new_dirs)
                if inside:
                    await self.send.send(inside)


async def _set_when_cancelled(stop: threading.Event) -> None:
    try:
        await anyio.sleep_forever()
    finally:
        stop.set()


async def watch_target(
    target: Target,
    path_filter: PathFilter,
    send: MemoryObjectSendStream[list[Change]],
    fallback: FallbackFn,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Watch one target until cancelled; started once its watches are in place."""
    await _TargetWatch(target, path_filter, send).run(fallback, task_status=task_status)


def probe(target: Target, path_filter: PathFilter) -> Target:
    """``target`` as it would be watched: its watches are laid and dropped again (blocking)."""
    lay = layout(target, path_filter)
    try:
        for watched, recursive in ((lay.flat, False), (lay.recursive, True)):
            notifier = _open(watched, recursive=recursive)
            if notifier is not None:
                notifier.close()
    except WatchLimitError:
        return replace(target, backend=Backend.STAT, reason=limit_message())
    except OSError:
        pass  # the real watcher will say what's wrong, and fall back
    return target
