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
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from ..._exceptions import WatchPathError
from ..._platform import DIR_FLAGS
from ..._threads import run_sync
from ..._types import Backend, Change, ChangeKind, Source
from ...filters import PathFilter
from ..names import KnownNames
from ..paths import filter_relpath, is_within
from ..plan import GONE, Target
from ..walk import Walked, pseudo_devices
from .inotify_bindings import (
    IN_ATTRIB,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_EXCL_UNLINK,
    IN_IGNORED,
    IN_ISDIR,
    IN_MASK_ADD,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    IN_UNMOUNT,
    Event,
    WatchLimitError,
    add_watch,
    init,
    inotify_limits,
    limit_message,
    read_events,
    rm_watch,
)

if TYPE_CHECKING:
    from . import FallbackFn

__all__ = ["MASK", "probe", "watch_target"]

log = logging.getLogger("asyncreload.events")

MASK = (
    IN_CREATE | IN_MOVED_TO  # added
    | IN_MODIFY | IN_ATTRIB  # modified (IN_ATTRIB: `touch`)
    | IN_DELETE | IN_MOVED_FROM  # deleted
    | IN_DELETE_SELF | IN_MOVE_SELF  # a watched directory went away: drop its watches
    | IN_ONLYDIR  # a directory replaced by a file between listing and watching is not watched
    | IN_EXCL_UNLINK  # a deleted file still open for writing (a temp file) raises nothing more
)  # fmt: skip
"""What each directory is watched for. Not ``IN_CLOSE_WRITE``: every write already raises
``IN_MODIFY``, and a third event per written file would fill the kernel's queue half as fast
again in a checkout, and report files that were opened for writing but not written."""

_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})
_DENIED = frozenset({errno.EACCES, errno.EPERM})
_VANISH_RETRIES = 5


def _join(directory: str, name: str) -> str:
    return directory + name if directory.endswith("/") else f"{directory}/{name}"


def _kind(entry: os.DirEntry[str]) -> tuple[str, bool, bool]:
    try:
        is_dir = entry.is_dir()
        return entry.name, is_dir, is_dir and entry.is_symlink()
    except OSError:
        return entry.name, False, False


class _Watches:
    """Which directory each watch descriptor stands for, and back.

    The kernel gives the same descriptor for the same inode, so one descriptor may stand for
    several paths (a directory and a symlink to it): each of them is reported.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.paths: dict[int, list[str]] = {}
        self.wds: dict[str, int] = {}
        self.names = KnownNames()
        """The names in each watched directory: a rename over one of them is a modification."""
        # Watched directories by parent, so that dropping a subtree costs its size, not the
        # whole tree's: `rm -rf` of a thousand directories is a thousand drops.
        self._children: dict[str, set[str]] = {}

    def add(self, path: str, wd: int) -> None:
        before = self.wds.get(path)
        if before is not None and before != wd:
            self._unlink(path, before)  # another directory now stands at path
        self.wds[path] = wd
        self._children.setdefault(posixpath.dirname(path), set()).add(path)
        paths = self.paths.setdefault(wd, [])
        if path not in paths:
            paths.append(path)

    def drop(self, top: str) -> bool:
        """Stop watching ``top`` and every directory below it; True if any was watched."""
        dropped = False
        stack = [top]
        while stack:
            path = stack.pop()
            stack.extend(self._children.pop(path, ()))
            self.names.forget(path)
            wd = self.wds.pop(path, None)
            if wd is not None:
                dropped = True
                self._unlink(path, wd)
        self._children.get(posixpath.dirname(top), set()).discard(top)
        return dropped

    def _unlink(self, path: str, wd: int) -> None:
        paths = self.paths.get(wd)
        if paths is None or path not in paths:
            return
        paths.remove(path)
        if not paths:
            del self.paths[wd]
            # A directory moved out of the target still exists: without this it would go on
            # raising events, under a path that is no longer its own.
            rm_watch(self.fd, wd)

    def forget(self, wd: int) -> None:
        """The kernel dropped ``wd`` itself (``IN_IGNORED``): forget it."""
        for path in self.paths.pop(wd, ()):
            self.names.forget(path)
            if self.wds.get(path) == wd:
                del self.wds[path]
                self._children.get(posixpath.dirname(path), set()).discard(path)


@dataclass
class _Outcome:
    """What one read of the queue amounts to."""

    changes: list[Change] = field(default_factory=list)
    new_dirs: dict[str, None] = field(default_factory=dict)  # an ordered set
    overflow: bool = False
    gone: bool = False
    """The target itself was moved or deleted."""


class _Tree:
    """One target's watches, and the changes its events make. Its methods block (they walk)."""

    def __init__(self, target: Target, path_filter: PathFilter, fd: int) -> None:
        self.target = target
        self.filter = path_filter
        self.fd = fd
        self.watches = _Watches(fd)
        self.excludes = frozenset(target.excludes)
        self.denied: set[str] = set()
        self.relative = filter_relpath(target.root)
        """``path`` relative to the watched root, as the filter sees it."""
        self._overflows = 0
        # A target that is a file is watched through its directory, for the file's name only:
        # an editor that saves by renaming a new file over the old one replaces the inode a
        # watch on the file itself would be stuck to.
        self.top = target.path
        self.file_name: str | None = None
        self.pseudo: frozenset[int] | None = None  # read from the mount table by the first walk
        self.stop = threading.Event()
        """Set when the watcher gives up on this tree: an abandoned walk ends at its next step."""
        self.parent_wd: int | None = None
        """The watch on the top's parent, which says when the top is deleted (see lay)."""

    def lay(self) -> None:
        """Watch the whole target. Raises :class:`FileNotFoundError` if it is not there, and
        :class:`PermissionError` if it can't be read (the poller then watches it: it tries
        again every sweep, where no event would say that the target became readable)."""
        path = self.target.path
        if stat.S_ISDIR(os.stat(path).st_mode):
            self.top, self.file_name = path, None
            self.walk(path, report=False)
        else:
            self.top, self.file_name = posixpath.split(path)
            wd = self._watch(self.top)
            if wd is not None:
                self.watches.add(self.top, wd)
                self.watches.names.listed(self.top, [self.file_name])
        if self.top in self.denied:
            raise PermissionError(errno.EACCES, "permission denied", self.top)
        if self.top not in self.watches.wds:
            raise FileNotFoundError(errno.ENOENT, "vanished while being watched", path)
        self._watch_parent()

    def _watch_parent(self) -> None:
        # The top's own IN_DELETE_SELF comes only once nothing holds the directory: while a
        # process has its cwd there (ours, under `watch` with no path; the user's shell), an
        # `rm -rf` of it raises nothing at all on its watch. Its parent's IN_DELETE comes at once.
        # IN_MASK_ADD: the parent may also be watched as part of the tree (through a symlink).
        parent = posixpath.dirname(self.top)
        if parent == self.top:
            return
        try:
            self.parent_wd = add_watch(
                self.fd, parent, IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR | IN_MASK_ADD
            )
        except OSError as e:  # an unreadable parent: IN_DELETE_SELF still comes, later
            log.debug("%s: can't watch it for the deletion of %s: %s", parent, self.top, e)

    def rebuild(self) -> None:
        """Walk the whole target again, keeping the watches that still apply, dropping the rest."""
        old = self.watches
        self.watches = _Watches(self.fd)
        try:
            self.lay()
        finally:
            for wd in old.paths.keys() - self.watches.paths.keys():
                rm_watch(self.fd, wd)

    def walk(self, start: str, *, report: bool) -> list[Change]:
        """Watch ``start`` and the directories below it that the filter walks.

        Each directory is watched before it is listed, so an entry made meanwhile raises an event
        or is listed, or both (the merge folds the two). With ``report``, what is listed is
        reported added: ``start`` is new, and its entries were made before its watch existed.
        """
        changes = []
        walks, accepts, relative = self.filter.walks, self.filter, self.relative
        if self.pseudo is None:
            self.pseudo = pseudo_devices()
        walked = Walked(self.top, self.target.root, self.pseudo, already=len(self.watches.paths))
        # Directories reached without a symlink first, then the others (the rule of walk.py),
        # each with the first symlink on the way to it.
        link = start if start != self.top and os.path.islink(start) else None
        unlinked: list[tuple[str, str | None]] = []
        linked: list[tuple[str, str | None]] = []
        (unlinked if link is None else linked).append((start, link))
        while (unlinked or linked) and not self.stop.is_set():
            path, link = unlinked.pop() if unlinked else linked.pop()
            for name, is_dir, is_link in self._enter(path, link, walked):
                child = _join(path, name)
                rel = relative(child)
                via = link or (child if is_link else None)
                if is_dir:
                    if child in self.excludes or not walks(rel):
                        continue
                    (unlinked if via is None else linked).append((child, via))
                if report and accepts(rel):
                    changes.append(Change(ChangeKind.ADDED, child, Source.EVENTS))
        return changes

    def _enter(self, path: str, link: str | None, walked: Walked) -> list[tuple[str, bool, bool]]:
        """Watch the directory at ``path`` and list it (each entry's name, whether it is a
        directory, following symlinks as the poller does, and whether it is a symlink to one),
        if the walk rule lets it in."""
        try:
            fd = os.open(path, DIR_FLAGS)
        except OSError as e:
            self._cant_read(path, e)
            return []
        try:
            st = os.fstat(fd)
            if st.st_dev in walked.pseudo:
                log.debug("%s: on a pseudo file system; not walked", path)
                return []
            wd = self._watch(path)
            if wd is None:
                return []
            others = self.watches.paths.get(wd)
            if others and path not in others:
                # The kernel gives one inode one descriptor: the directory is watched already.
                log.debug("%s: already watched as %s; not walked again", path, others[0])
                return []
            if not others:
                walked.count(path, link)  # raises past MAX_DIRS
            self.watches.add(path, wd)
            with os.scandir(fd) as it:  # read while fd is open: is_dir() of a link stats through it
                entries = [_kind(entry) for entry in it]
        except (WatchLimitError, WatchPathError):
            raise  # the watch limit, or the walk grew too large: the target's problem
        except OSError as e:
            self._cant_read(path, e)
            return []
        finally:
            os.close(fd)
        self.watches.names.listed(path, (name for name, _, _ in entries))
        return entries

    def _watch(self, path: str) -> int | None:
        if self.stop.is_set():
            # The watcher gave up on this tree and closes its descriptor: a walk abandoned in
            # a thread must not add watches to whatever reuses that number.
            return None
        try:
            wd = add_watch(self.fd, path, MASK)
        except WatchLimitError:
            raise
        except OSError as e:
            self._cant_read(path, e)
            return None
        if path in self.denied:
            self.denied.discard(path)
            log.info("%s: readable again; watching it", path)
        return wd

    def _cant_read(self, path: str, e: OSError) -> None:
        if e.errno in _GONE:
            return  # vanished mid-walk: its deletion is an event of its parent's
        if e.errno in _DENIED:
            if path not in self.denied:
                self.denied.add(path)
                if path != self.top:  # the top falls back to the poller, which says so
                    # Worded as the poller words it. A chmod of the directory raises IN_ATTRIB
                    # in its parent's watch, and the walk is tried again then.
                    log.warning("%s: permission denied; not watched until it can be read", path)
            return
        log.warning("%s: can't be watched (%s); skipped", path, e.strerror or e)

    def handle(self, events: Iterable[Event]) -> _Outcome:
        """The changes that ``events`` make; watches of directories that went away are dropped."""
        out = _Outcome()
        watches = self.watches
        for event in events:
            mask = event.mask
            if mask & IN_Q_OVERFLOW:
                out.overflow = True
                continue
            if mask & IN_IGNORED:
                if event.wd == watches.wds.get(self.top):
                    out.gone = True
                watches.forget(event.wd)
                continue
            if (
                event.wd == self.parent_wd
                and mask & (IN_DELETE | IN_MOVED_FROM)
                and event.name == posixpath.basename(self.top)
            ):
                out.gone = True
            dirs = watches.paths.get(event.wd)
            if not dirs:
                continue  # a watch already dropped: its last events are still in the queue
            if event.name:
                for directory in list(dirs):
                    self._entry(_join(directory, event.name), mask, out)
            elif mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT):
                self._went_away(list(dirs), deleted=not mask & IN_MOVE_SELF, out=out)
        return out

    def _entry(self, path: str, mask: int, out: _Outcome) -> None:
        """An event about the entry at ``path`` in a watched directory."""
        if self.file_name is not None and path != self.target.path:
            return
        if self.excludes and any(is_within(path, x) for x in self.excludes):
            return
        rel = self.relative(path)
        is_dir = bool(mask & IN_ISDIR)
        if mask & (IN_CREATE | IN_MOVED_TO):
            # A rename over a name that was there (an atomic save) is a modification.
            kind = self.watches.names.arrived(path)
            # A symlink to a directory comes without IN_ISDIR; it is walked, as the poller does.
            if not is_dir and self.file_name is None and os.path.isdir(path):
                is_dir = True
            if is_dir:
                if not self.filter.walks(rel):
                    return
                out.new_dirs[path] = None
                kind = ChangeKind.ADDED  # a directory is reported only as added or deleted
            if self.filter(rel):
                out.changes.append(Change(kind, path, Source.EVENTS))
        elif mask & (IN_DELETE | IN_MOVED_FROM):
            self.watches.names.left(path)
            # A directory moved away raises this one event for everything in it: it is reported
            # even if the filter takes only some files, which were in it and are now gone.
            dropped = (is_dir or path in self.watches.wds) and self.watches.drop(path)
            if dropped or self.filter(rel):
                out.changes.append(Change(ChangeKind.DELETED, path, Source.EVENTS))
        elif is_dir:
            # Directories are reported only as added or deleted; but one that could not be
            # read may just have been made readable.
            if mask & IN_ATTRIB and path in self.denied:
                out.new_dirs[path] = None
        elif self.filter(rel):
            out.changes.append(Change(ChangeKind.MODIFIED, path, Source.EVENTS))

    def _went_away(self, dirs: list[str], *, deleted: bool, out: _Outcome) -> None:
        """Watched directories moved or deleted: usually already dropped by the parent's event.

        What is left are the top and directories reached through a symlink, whose real parent
        is not watched. A move leaves the watch on the same inode, which may still be reached
        by another of its paths: only the paths that no longer lead to a directory are dropped.
        """
        for path in dirs:
            if path == self.top:
                out.gone = True
            elif deleted or not os.path.isdir(path):
                self.watches.drop(path)
                if self.filter(self.relative(path)):
                    out.changes.append(Change(ChangeKind.DELETED, path, Source.EVENTS))

    def step(self) -> tuple[list[Change], str | None]:
        """Read what the kernel queued; the changes, and why to fall back to polling, if so."""
        out = self.handle(read_events(self.fd))
        changes = out.changes
        top_changed = Change(ChangeKind.MODIFIED, self.target.path, Source.EVENTS)
        try:
            if out.overflow:
                self._warn_overflow()
                self.rebuild()
                # What the lost events were can't be known: a change of the target itself
                # makes a reloader reload, as it would have for them.
                changes.append(top_changed)
            else:
                for directory in out.new_dirs:
                    changes += self.walk(directory, report=True)
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
    tree = _Tree(target, path_filter, fd)
    try:
        for attempt in range(1, _VANISH_RETRIES + 1):
            try:
                await run_sync(tree.lay)
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
        log.debug("%s: %d inotify watches", target.path, len(tree.watches.paths))
        ready()
        return await tree.pump(send)
    finally:
        tree.stop.set()
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
        _Tree(target, path_filter, fd).lay()
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
