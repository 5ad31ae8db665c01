"""The native event source (Linux): one inotify instance per target, read when the kernel says so.

No thread waits for events and nothing wakes on a timer: the reader task sleeps in
:func:`anyio.wait_readable` on the inotify descriptor until the kernel has queued something, so
an idle watcher costs no CPU, and a change is handed on about a millisecond after it happens (the
merge then does the debouncing).

inotify watches one directory at a time, so a target is walked and every directory in it gets a
watch of its own, except the ones the filter prunes (``node_modules``, ``.git``, ...) and the
nested targets watched the other way (a polled FUSE mount is never walked). Symlinked directories
are followed by the rule the stat poller follows (:mod:`..walk`): each directory once, never into
a pseudo file system, and at most ``MAX_DIRS`` of them. Walks run in threads that are abandoned
(and stop at their next directory) when the watcher is cancelled. A new directory is walked
when it appears, and whatever is already in it is reported added (a ``git checkout`` fills a
directory before its watch can exist). A directory moved or deleted takes its watches with it, so
no change is ever reported under a path that is no longer there.

When the kernel's event queue overflows (``fs.inotify.max_queued_events``), events were lost:
the target itself is reported modified, so a reloader reloads, and the tree is walked again for
the directories that appeared meanwhile. When the kernel refuses a watch (the watch limit) or an
instance (the instance limit), or the target itself is moved or deleted, the target falls back to
the stat poller, with one warning.

This module is the reader and the fallback; the rest is in three modules of one role each:
:mod:`.inotify_tree` lays the watches (the walks), :mod:`.inotify_watches` keeps which
directory each watch descriptor stands for, :mod:`.inotify_translate` makes events changes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from ..._threads import run_sync
from ..._types import Backend, Change, ChangeKind, Source
from ...filters import PathFilter
from ..plan import GONE, Target
from .inotify_bindings import (
    WatchLimitError,
    init,
    inotify_limits,
    limit_message,
    read_events,
)
from .inotify_translate import translate
from .inotify_tree import WatchTree

if TYPE_CHECKING:
    from . import FallbackFn

__all__ = ["probe", "watch_target"]

log = logging.getLogger("asyncreload.events")

_VANISH_RETRIES = 5


class _Reader:
    """One target's inotify queue: read when the kernel says so, its events made changes, new
    directories walked, and a reason to fall back to polling when there is one."""

    def __init__(self, target: Target, path_filter: PathFilter, fd: int) -> None:
        self.target = target
        self.fd = fd
        self.watched = WatchTree(target, path_filter, fd)
        self._overflows = 0

    def step(self) -> tuple[list[Change], str | None]:
        """Read what the kernel queued; the changes, and why to fall back to polling, if so."""
        out = translate(self.watched, read_events(self.fd))
        changes = out.changes
        top_changed = Change(ChangeKind.MODIFIED, self.target.path, Source.EVENTS)
        try:
            if out.overflow:
                self._warn_overflow()
                self.watched.rebuild()
                # What the lost events were can't be known: a change of the target itself
                # makes a reloader reload, as it would have for them.
                changes.append(top_changed)
            else:
                for directory in out.new_dirs:
                    changes += self.watched.walk(directory, report=True)
        except WatchLimitError:
            # The poller's first sweep is its baseline: what changes until then is reported
            # as the target having changed.
            changes.append(top_changed)
            return changes, limit_message()
        except FileNotFoundError:
            out.gone = True
        except PermissionError:
            changes.append(top_changed)
            return changes, "permission denied"
        if out.gone:
            changes.append(Change(ChangeKind.DELETED, self.target.path, Source.EVENTS))
            return changes, GONE
        return changes, None

    def _warn_overflow(self) -> None:
        self._overflows += 1
        queued = inotify_limits().get("max_queued_events")
        now = f" (now {queued})" if queued is not None else ""
        log.log(
            logging.WARNING if self._overflows == 1 else logging.DEBUG,
            "%s: the kernel's inotify queue overflowed and events were lost; reporting the "
            "whole target as changed. If this recurs, raise 'sysctl "
            "fs.inotify.max_queued_events'%s",
            self.target.path,
            now,
        )

    async def pump(self, send: MemoryObjectSendStream[list[Change]]) -> str:
        """Hand on the changes of each wakeup in one send, until this target must be polled."""
        while True:
            await anyio.wait_readable(self.fd)
            # Reading is quick, but new directories are walked: all of it off the event loop,
            # in a thread abandoned on cancellation (a symlink may lead anywhere).
            changes, fall_back = await run_sync(self.step)
            if changes:
                await send.send(changes)
            if fall_back is not None:
                log.warning("%s: %s; polling it instead", self.target.path, fall_back)
                return fall_back


async def _watch(
    target: Target,
    path_filter: PathFilter,
    send: MemoryObjectSendStream[list[Change]],
    ready: Callable[[], None],
) -> str:
    """Watch ``target`` while inotify can, calling ``ready`` once its watches are in place;
    then say why inotify can't watch it (any more)."""
    try:
        fd = init()
    except OSError as e:
        reason = limit_message(e) if isinstance(e, WatchLimitError) else f"inotify: {e.strerror}"
        log.warning("%s: %s; polling it instead", target.path, reason)
        return reason
    # The walks get threads of their own (never a token of the default limiter that the
    # embedding app's to_thread calls share), abandoned if the watcher is cancelled mid-walk.
    reader = _Reader(target, path_filter, fd)
    try:
        for attempt in range(1, _VANISH_RETRIES + 1):
            try:
                await run_sync(reader.watched.lay)
                break
            except FileNotFoundError:
                # If the target keeps vanishing as it is walked, the poller copes with that better.
                if attempt == _VANISH_RETRIES:
                    reason = f"{target.path} keeps disappearing"
                    log.warning("%s; polling it instead", reason)
                    return reason
            except WatchLimitError as e:
                log.warning("%s: %s; polling it instead", target.path, limit_message(e))
                return limit_message(e)
            except PermissionError:
                # Not warned here: the poller's first sweep warns, and says when it can read it.
                log.debug("%s: permission denied; polling it", target.path)
                return "permission denied"
        log.debug("%s: %d inotify watches", target.path, len(reader.watched.watches.paths))
        ready()
        return await reader.pump(send)
    finally:
        reader.watched.stop.set()
        # No task may be left waiting on a descriptor number that is about to be reused.
        anyio.notify_closing(fd)
        os.close(fd)


async def watch_target(
    target: Target,
    path_filter: PathFilter,
    send: MemoryObjectSendStream[list[Change]],
    fallback: FallbackFn,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Watch one target until cancelled; started once its watches are in place.

    If inotify can't watch it (or stops being able to), ``fallback`` hands it to the poller.
    """
    started = False

    def ready() -> None:
        nonlocal started
        if not started:
            started = True
            task_status.started()

    reason = await _watch(target, path_filter, send, ready)
    # The poller's first sweep is done when fallback returns: only then is this target being
    # watched, and only then may the watcher say it is ready.
    await fallback(target, reason, send)
    ready()


def probe(target: Target, path_filter: PathFilter) -> Target:
    """``target`` as it would be watched: its watches are laid and dropped again (blocking)."""
    try:
        fd = init()
    except WatchLimitError as e:
        return replace(target, backend=Backend.STAT, reason=limit_message(e))
    except OSError:
        return target  # the real watcher will say what's wrong, and fall back
    try:
        WatchTree(target, path_filter, fd).lay()
    except WatchLimitError as e:
        return replace(target, backend=Backend.STAT, reason=limit_message(e))
    except PermissionError:
        return replace(
            target, backend=Backend.STAT, reason="permission denied: polled until readable"
        )
    except OSError:
        pass
    finally:
        os.close(fd)
    return target
