"""The watchfiles event source: kernel events through watchfiles' Rust backend, ``RustNotify``.

The event stream off Linux, and on Linux when ``ASYNCRELOAD_EVENTS_BACKEND=watchfiles`` asks for
it (the native :mod:`.inotify` is the default there). RustNotify's thread wakes every
:data:`STEP_MS` even when nothing happens; that is the price of its portability.

A target is not handed to watchfiles whole. Its top directory, and every directory on the way
down to a nested target watched the other way (a FUSE mount three levels down), are watched flat;
their other subdirectories recursively. So the watcher never walks into a polled mount (walking
a FUSE tree to add inotify watches costs seconds and still sees nothing from the far side), and
ignored directories at those levels (``node_modules``, ``.venv``, ``.git``) cost no watches. When
a new directory appears at a flat level, the watches are laid again to take it in.

If the kernel refuses the watches (the inotify watch limit), the target falls back to the stat
poller with one warning that names the sysctl to raise. So does a target in which a file name
appears that isn't valid UTF-8 (POSIX names are bytes): watchfiles can't hand it over, and its
watcher fails for good, events lost; the target is reported modified, for what was lost, and
polled from then on (the poller takes any name).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream
from watchfiles._rust_notify import RustNotify, WatchfilesRustInternalError

from ..._platform import is_link_path
from ..._types import Backend, Change, ChangeKind, Source
from ...filters import PathFilter
from ..names import KnownNames
from ..paths import filter_relpath, is_within
from ..plan import GONE, Target
from ..poll import Sweeper
from .inotify_bindings import WatchLimitError, limit_message

if TYPE_CHECKING:
    from . import FallbackFn

__all__ = ["Layout", "layout", "probe", "watch_target"]

log = logging.getLogger("asyncreload.events")

STEP_MS = 10
"""How long watchfiles waits for quiet before handing a group of events over. Kept short: the
merge does the real debouncing, so this only bounds how often the Rust thread wakes."""
RETIRE_MS = 200
"""How often an idle watch comes back to see whether newer watches replaced it."""
DRAIN_S = 2.0
"""How long the watches of a deleted target may take to hand on what they hold (a step or a
retirement, so well under a second)."""

_KINDS = {1: ChangeKind.ADDED, 2: ChangeKind.MODIFIED, 3: ChangeKind.DELETED}

UNDECODABLE = "a file name in it isn't UTF-8, which watchfiles' backend can't take"


class _UndecodableError(Exception):
    """A name watchfiles can't take: the target must be polled."""


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
        parent = os.path.dirname(excluded)
        while is_within(parent, top) and parent not in flat:
            flat.add(parent)
            parent = os.path.dirname(parent)
    relative = filter_relpath(target.root)
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
                    if path_filter.walks(relative(child)):
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
    except UnicodeEncodeError:  # a directory to watch has a name that isn't UTF-8
        raise _UndecodableError from None
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
        self.relative = filter_relpath(target.root)
        """``path`` relative to the watched root, as the filter sees it."""
        self.layout = Layout((), ())
        self.names = KnownNames()
        """The names in each directory: a rename over one of them is a modification."""
        self.undecodable = False
        """A name watchfiles can't take appeared: the watches are useless from now on."""
        self.gone = False
        """The target itself was deleted or moved away: its watches see nothing any more."""
        self._relay = anyio.Event()
        self._generation = 0
        """Bumped when new watches replace the old: the old ones' pumps then finish."""
        self._pumping = 0
        self._drained = anyio.Event()
        """Set when the last pump has finished."""
        # The watch threads live as long as the watcher: they get tokens of their own, so they
        # never starve the default limiter that the embedding app's to_thread calls share.
        self._limiter = anyio.CapacityLimiter(1)

    def convert(self, raw: set[tuple[int, str]]) -> tuple[list[Change], list[str], bool]:
        """Our changes from watchfiles', the new directories among them (to look into), and
        whether the watches must be laid again to take one in: a new directory at a flat level,
        or one reached through a symlink, which a recursive watch doesn't follow once laid."""
        # watchfiles hands a set: the order of a path's events is lost. What they amount to is
        # decided by what is there now.
        codes: dict[str, set[int]] = {}
        for code, path in raw:
            codes.setdefault(path, set()).add(code)
        changes = []
        new_dirs = []
        relay = False
        target = self.target
        for path, kinds in sorted(codes.items()):
            if not is_within(path, target.path):
                continue
            if any(is_within(path, x) for x in target.excludes):
                continue
            exists = os.path.lexists(path)
            if path == target.path and not exists:
                self.gone = True  # the pump hands this batch on first, then says so
            if 3 in kinds and not exists:
                self.names.left(path)
                self.names.forget(path)
                if 1 in kinds:
                    continue  # a temporary file, renamed away or deleted: nothing to report
                kind = ChangeKind.DELETED
            elif 1 in kinds:
                # A rename over a name that was there (an atomic save) is a modification.
                kind = self.names.arrived(path)
            else:
                kind = ChangeKind.MODIFIED
            relpath = self.relative(path)
            if 1 in kinds and exists and os.path.isdir(path):
                if not self.filter.walks(relpath):
                    continue
                new_dirs.append(path)
                kind = ChangeKind.ADDED
                relay = relay or os.path.dirname(path) in self.layout.flat or is_link_path(path)
            if self.filter(relpath):
                changes.append(Change(kind, path, Source.EVENTS))
        return changes, new_dirs, relay

    def contents(self, tops: Iterable[str], *, report: bool = True) -> list[Change]:
        """Everything inside directories, reported as added (with ``report``); their names are
        noted either way. Walked by the stat poller's walker, so symlinked directories are
        followed and a loop is walked once, as the poller and the native backend do.

        A directory's watch is added only after the event of its creation, so files created in
        it in between raise no event of their own (a ``git checkout`` or an unpacked archive
        does this all the time). Looking inside once the watch is there catches them; what is
        also reported by an event is folded into one entry by the merge.
        """
        changes = []
        for top in tops:
            sweeper = Sweeper(
                top, self.filter, excludes=self.target.excludes, filter_root=self.target.root
            )
            snapshot = sweeper.sweep(None).snapshot
            for directory, record in snapshot.dirs.items():
                self.names.listed(directory, [*record.files, *record.subdirs])
                if report and sweeper.report_dir(directory):
                    changes.append(Change(ChangeKind.ADDED, directory, Source.EVENTS))
            if report:
                changes.extend(
                    Change(ChangeKind.ADDED, path, Source.EVENTS) for path in snapshot.files
                )
        return changes

    async def run(
        self,
        fallback: FallbackFn,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        notifiers, failed = await self._lay()
        reason = failed or ""
        started = False
        if failed is None:
            await anyio.to_thread.run_sync(partial(self.contents, [self.target.path], report=False))
            async with anyio.create_task_group() as tg:
                self._pump_all(tg, notifiers)
                task_status.started()
                started = True
                reason = await self._relay_until_broken(tg)
                tg.cancel_scope.cancel()
        if self.undecodable:
            # Its events since the last batch are lost: a change of the target itself makes a
            # reloader reload, as they would have.
            await self.send.send([Change(ChangeKind.MODIFIED, self.target.path, Source.EVENTS)])
        # The poller's first sweep is done when fallback returns: only then is this target
        # being watched, and only then may the watcher say it is ready.
        await fallback(self.target, reason, self.send)
        if not started:
            task_status.started()

    async def _lay(self) -> tuple[list[RustNotify], str | None]:
        """Lay the watches anew; the notifiers, or why the target must be polled."""
        for _attempt in range(5):
            self.layout = await anyio.to_thread.run_sync(layout, self.target, self.filter)
            try:
                return await anyio.to_thread.run_sync(self._open_all), None
            except FileNotFoundError:
                # A directory vanished between listing and watching: lay the watches again. If
                # the target itself keeps vanishing, the poller copes with that better.
                continue
            except WatchLimitError as e:
                reason = limit_message()
                log.warning("%s: %s; polling it instead", self.target.path, reason)
                log.debug("watchfiles said: %s", e)
                return [], reason
            except _UndecodableError:
                self.undecodable = True
                log.warning("%s: %s; polling it instead", self.target.path, UNDECODABLE)
                return [], UNDECODABLE
        reason = f"{self.target.path} keeps disappearing"
        log.warning("%s; polling it instead", reason)
        return [], reason

    async def _relay_until_broken(self, tg: anyio.abc.TaskGroup) -> str:
        """Lay the watches again whenever a pump asks (a new directory at a flat level), until
        that fails; then say why.

        The old watches keep running until the new ones are in place, and their pumps then hand
        on what they still hold: nothing is lost in between (what both saw, the merge folds).
        """
        while True:
            await self._relay.wait()
            self._relay = anyio.Event()
            if self.undecodable:
                log.warning("%s: %s; polling it instead", self.target.path, UNDECODABLE)
                return UNDECODABLE
            if self.gone:  # the poller sees it come back
                # Each watch has a thread of its own: the parent's may say the top is gone
                # while the top's still holds what happened inside it first (the files of an
                # `rm -rf`). They hand that on and finish; cancelled, they would drop it.
                self._generation += 1
                with anyio.move_on_after(DRAIN_S):
                    await self._drained.wait()
                log.warning("%s: %s; polling it instead", self.target.path, GONE)
                return GONE
            old = self.layout
            notifiers, reason = await self._lay()
            if reason is not None:
                return reason
            self._generation += 1  # the old pumps finish after their next hand-over
            self._pump_all(tg, notifiers)
            fresh = set(self.layout.recursive) - set(old.recursive)
            added = await anyio.to_thread.run_sync(self.contents, fresh)
            if added:
                await self.send.send(added)

    def _open_all(self) -> list[RustNotify]:
        opened = []
        try:
            for paths, recursive in ((self.layout.flat, False), (self.layout.recursive, True)):
                n = _open(paths, recursive=recursive)
                if n is not None:
                    opened.append(n)
            parent = self._open_parent()
            if parent is not None:
                opened.append(parent)
        except BaseException:
            for n in opened:
                n.close()
            raise
        return opened

    def _open_parent(self) -> RustNotify | None:
        """A flat watch on the top's parent, which says when the top is deleted: the top's own
        watch says nothing while a process has its cwd there (ours, under `watch` with no path;
        the user's shell). Its other events are outside the target, and dropped."""
        top = self.target.path
        parent = os.path.dirname(top)
        if parent == top or not os.path.isdir(top):
            return None
        try:
            return RustNotify([parent], False, False, 0, False, False)
        except OSError as e:  # an unreadable parent: the top's own watch may still say it
            log.debug("%s: can't watch it for the deletion of %s: %s", parent, top, e)
            return None

    def _pump_all(self, tg: anyio.abc.TaskGroup, notifiers: list[RustNotify]) -> None:
        self._limiter.total_tokens = max(self._limiter.total_tokens, 2 * len(notifiers))
        for notifier in notifiers:
            self._pumping += 1
            tg.start_soon(self._pump_one, notifier, self._generation)

    async def _pump_one(self, notifier: RustNotify, generation: int) -> None:
        """Forward one notifier's events until newer watches replace it (or cancellation)."""
        stop = threading.Event()  # set only on cancellation: a stopped watch drops what it holds
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_set_when_cancelled, stop)
                await self._forward(notifier, generation, stop)
                tg.cancel_scope.cancel()
        finally:
            notifier.close()
            self._pumping -= 1
            if not self._pumping:
                self._drained.set()

    async def _forward(self, notifier: RustNotify, generation: int, stop: threading.Event) -> None:
        while True:
            # Not cancellable in the thread; _set_when_cancelled makes it return within a step.
            # The timeout lets a replaced notifier notice it is done, without dropping anything:
            # it times out only when it holds nothing.
            try:
                raw = await anyio.to_thread.run_sync(
                    notifier.watch, STEP_MS, STEP_MS, RETIRE_MS, stop, limiter=self._limiter
                )
            except WatchfilesRustInternalError as e:
                if "decode" not in str(e):
                    raise
                self.undecodable = True  # and it says so again on every call from now on
                self._relay.set()
                return
            if raw == "timeout":
                if generation != self._generation:
                    return
                continue
            if isinstance(raw, str):  # "stop" (or "signal", which we don't ask for)
                return
            changes, new_dirs, relay = self.convert(raw)
            if changes:
                await self.send.send(changes)
            if self.gone:
                self._relay.set()
                return
            if generation != self._generation:
                return  # the newer watches, in place before this hand-over, see the rest
            if relay:
                self._relay.set()
            elif new_dirs:
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
    except _UndecodableError:
        return replace(target, backend=Backend.STAT, reason=UNDECODABLE)
    except OSError:
        pass  # the real watcher will say what's wrong, and fall back
    return target
