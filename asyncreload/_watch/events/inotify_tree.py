"""One target's inotify watches, laid by walking it: the whole target, a new directory, or the
whole target again after the kernel's queue overflowed (:class:`WatchTree`).

The walk follows the rule of :mod:`..walk`, as the stat poller does; each directory is watched
before it is listed, so nothing made meanwhile is missed.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import stat
import threading

from ..._exceptions import WatchPathError
from ..._platform import DIR_FLAGS, os_error_kind
from ..._types import Change, ChangeKind, Source
from ...filters import PathFilter
from ..paths import below, filter_relpath
from ..plan import Target
from ..walk import Walked, pseudo_devices
from .inotify_bindings import (
    IN_ATTRIB,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_EXCL_UNLINK,
    IN_MASK_ADD,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    WatchLimitError,
    add_watch,
    rm_watch,
)
from .inotify_watches import Watches

__all__ = ["MASK", "WatchTree"]

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

_DENIED = frozenset({errno.EACCES, errno.EPERM})


def _kind(entry: os.DirEntry[str]) -> tuple[str, bool, bool]:
    try:
        is_dir = entry.is_dir()
        return entry.name, is_dir, is_dir and entry.is_symlink()
    except OSError:
        return entry.name, False, False


class WatchTree:
    """One target's watches, laid by walking it; its methods block (they walk).

    What the watches stand for is kept in :attr:`watches`; what the events on them mean is
    :func:`.inotify_translate.translate`'s business, which reads this tree (the top, the filter,
    the directories that could not be read) and drops the watches of directories that went.
    """

    def __init__(self, target: Target, path_filter: PathFilter, fd: int) -> None:
        self.target = target
        self.filter = path_filter
        self.fd = fd
        self.watches = Watches(fd)
        self.excludes = frozenset(target.excludes)
        self.denied: set[str] = set()
        self.relative = filter_relpath(target.root)
        """``path`` relative to the watched root, as the filter sees it."""
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
        self.watches = Watches(self.fd)
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
            base = below(path)
            for name, is_dir, is_link in self._enter(path, link, walked):
                child = base + name
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
        if os_error_kind(e) in ("gone", "unresolvable link"):
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
