"""What a read of one target's inotify queue amounts to: the changes its events make, the new
directories to walk, and whether the queue overflowed or the target itself went.

The events are read against the target's :class:`.inotify_tree.WatchTree`, whose bookkeeping
they keep up to date (a directory moved or deleted takes its watches with it); walking is left
to the caller, which does it after the whole read.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..._types import Change, ChangeKind, Source
from ..paths import below, is_within
from .inotify_bindings import (
    IN_ATTRIB,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    IN_UNMOUNT,
    Event,
)
from .inotify_tree import WatchTree

__all__ = ["Outcome", "translate"]


@dataclass
class Outcome:
    """What one read of the queue amounts to."""

    changes: list[Change] = field(default_factory=list)
    new_dirs: dict[str, None] = field(default_factory=dict)  # an ordered set
    overflow: bool = False
    gone: bool = False
    """The target itself was moved or deleted."""


def translate(tree: WatchTree, events: Iterable[Event]) -> Outcome:
    """The changes that ``events`` make; watches of directories that went away are dropped."""
    out = Outcome()
    watches = tree.watches
    for event in events:
        mask = event.mask
        if mask & IN_Q_OVERFLOW:
            out.overflow = True
            continue
        if mask & IN_IGNORED:
            if event.wd == watches.wds.get(tree.top):
                out.gone = True
            watches.forget(event.wd)
            continue
        if (
            event.wd == tree.parent_wd
            and mask & (IN_DELETE | IN_MOVED_FROM)
            and event.name == posixpath.basename(tree.top)
        ):
            out.gone = True
        dirs = watches.paths.get(event.wd)
        if not dirs:
            continue  # a watch already dropped: its last events are still in the queue
        if event.name:
            for directory in list(dirs):
                _entry(tree, below(directory) + event.name, mask, out)
        elif mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT):
            _went_away(tree, list(dirs), deleted=not mask & IN_MOVE_SELF, out=out)
    return out


def _entry(tree: WatchTree, path: str, mask: int, out: Outcome) -> None:
    """An event about the entry at ``path`` in a watched directory."""
    if tree.file_name is not None and path != tree.target.path:
        return
    if tree.excludes and any(is_within(path, x) for x in tree.excludes):
        return
    rel = tree.relative(path)
    is_dir = bool(mask & IN_ISDIR)
    if mask & (IN_CREATE | IN_MOVED_TO):
        # A rename over a name that was there (an atomic save) is a modification.
        kind = tree.watches.names.arrived(path)
        # A symlink to a directory comes without IN_ISDIR; it is walked, as the poller does.
        if not is_dir and tree.file_name is None and os.path.isdir(path):
            is_dir = True
        if is_dir:
            if not tree.filter.walks(rel):
                return
            out.new_dirs[path] = None
            kind = ChangeKind.ADDED  # a directory is reported only as added or deleted
        if tree.filter(rel):
            out.changes.append(Change(kind, path, Source.EVENTS))
    elif mask & (IN_DELETE | IN_MOVED_FROM):
        tree.watches.names.left(path)
        # A directory moved away raises this one event for everything in it: it is reported
        # even if the filter takes only some files, which were in it and are now gone.
        dropped = (is_dir or path in tree.watches.wds) and tree.watches.drop(path)
        if dropped or tree.filter(rel):
            out.changes.append(Change(ChangeKind.DELETED, path, Source.EVENTS))
    elif is_dir:
        # Directories are reported only as added or deleted; but one that could not be
        # read may just have been made readable.
        if mask & IN_ATTRIB and path in tree.denied:
            out.new_dirs[path] = None
    elif tree.filter(rel):
        out.changes.append(Change(ChangeKind.MODIFIED, path, Source.EVENTS))


def _went_away(tree: WatchTree, dirs: list[str], *, deleted: bool, out: Outcome) -> None:
    """Watched directories moved or deleted: usually already dropped by the parent's event.

    What is left are the top and directories reached through a symlink, whose real parent
    is not watched. A move leaves the watch on the same inode, which may still be reached
    by another of its paths: only the paths that no longer lead to a directory are dropped.
    """
    for path in dirs:
        if path == tree.top:
            out.gone = True
        elif deleted or not os.path.isdir(path):
            tree.watches.drop(path)
            if tree.filter(tree.relative(path)):
                out.changes.append(Change(ChangeKind.DELETED, path, Source.EVENTS))
