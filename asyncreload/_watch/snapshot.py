"""What a sweep of the stat poller saw (pure): each file's key, each directory's record, and
the difference between two records' files.

Nothing here touches the file system: :mod:`.poll_read` reads a directory, :mod:`.poll` walks
the tree and compares each directory it reads with the last :class:`Snapshot`'s record of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import _platform
from .._platform import is_dead_mount
from .._types import Change, ChangeKind, Source
from .paths import below

__all__ = [
    "UNREADABLE",
    "DirRecord",
    "FileKey",
    "Problem",
    "Snapshot",
    "diff_files",
    "file_key",
    "same_content",
    "windows_file_key",
]

FileKey = int
"""What makes a file "changed": its mtime_ns, ctime_ns, size and inode, packed into one int by
:func:`file_key`. One int, not a tuple: a snapshot of 100,000 files is then 100,000 fewer
objects for the garbage collector to walk (whose pauses stall the event loop too) and ~10 MB
less memory.

The ctime catches an edit whose mtime was put back (``cp -p``, ``touch -r``, rsync); the inode, a
file replaced by another within one timestamp tick. The inode is the lowest 64 bits, so
:func:`same_content` can leave it out where inode numbers mean nothing: across a remount (sshfs
hands out new ones), where the content metadata alone says what changed.

On Windows ``st_ctime`` is the creation time, not a change time, so the key is made of other
fields there (:func:`windows_file_key`)."""

UNREADABLE: FileKey = -1
"""The key of a listed file that could not be stat'ed yet (EACCES, ...): any real key differs."""


def file_key(st: os.stat_result) -> FileKey:
    """(mtime_ns, ctime_ns, size, inode) as one int, exactly: equal keys mean all are equal.
    Where ctime is no change time (Windows), :func:`windows_file_key`."""
    if not _platform.CTIME_IS_CHANGE:
        return windows_file_key(st)
    return (st.st_mtime_ns << 192) | (st.st_ctime_ns << 128) | (st.st_size << 64) | st.st_ino


_LOW_64 = (1 << 64) - 1


def windows_file_key(st: os.stat_result) -> FileKey:
    """The key where ``st_ctime`` is the creation time (Windows): (mtime_ns, file attributes,
    size, file index), in the same places as :func:`file_key`'s.

    The creation time says nothing of an edit (and Windows's "tunnelling" even hands a file
    replaced within 15 s its predecessor's), so it is left out, and what catches an edit whose
    mtime was put back on POSIX (the ctime) is missing here: the attributes catch a change of
    read-only, hidden or archive (which a write sets), the file index a file replaced by
    another. The file index may be 128 bits (ReFS, Python 3.12+): folded to 64, so that
    :func:`same_content` still leaves it out alone.
    """
    ino = st.st_ino
    if ino > _LOW_64:
        ino = (ino ^ (ino >> 64)) & _LOW_64
    attributes: int = getattr(st, "st_file_attributes", 0)  # Windows's; 0 where forced elsewhere
    return (st.st_mtime_ns << 192) | (attributes << 128) | (st.st_size << 64) | ino


def same_content(a: FileKey, b: FileKey) -> bool:
    """True if two keys agree on everything but the inode (for a file seen across a remount)."""
    return a >> 64 == b >> 64


@dataclass(frozen=True)
class DirRecord:
    """What a sweep saw in one directory. Never changed once made: a later sweep that finds the
    directory as it was carries this same object over, so an idle sweep allocates next to
    nothing (and leaves the garbage collector, whose pauses stall the event loop, nothing to do).
    """

    mtime_ns: int
    ino: int
    trusted: bool
    """Old enough that an unchanged mtime proves an unchanged listing."""
    subdirs: tuple[str, ...]
    """Names of the subdirectories to walk (filtered)."""
    files: dict[str, FileKey]
    """Each file's key by name (filtered); never mutated once the record is made."""
    dev: int = 0
    """The directory's st_dev: when it changes, the file system was remounted (or replaced)."""
    links: frozenset[str] = frozenset()
    """The subdirectories reached through a symlink (walked after the others: see walk.py)."""


@dataclass
class Snapshot:
    """What one sweep saw: each directory's record, by path."""

    dirs: dict[str, DirRecord] = field(default_factory=dict)
    loose: dict[str, FileKey] = field(default_factory=dict)
    """A root that is a single file rather than a directory."""

    @property
    def files(self) -> dict[str, FileKey]:
        """Every file's key by full path (built on demand; for tests and messages)."""
        files = dict(self.loose)
        for path, d in self.dirs.items():
            base = below(path)
            for name, key in d.files.items():
                files[base + name] = key
        return files

    def count(self) -> int:
        """How many files the sweep saw."""
        return len(self.loose) + sum(len(d.files) for d in self.dirs.values())

    def subtree(self, path: str) -> list[tuple[str, DirRecord]]:
        """The records of ``path`` and everything below it.

        >>> top, a = DirRecord(0, 1, True, ("a",), {}), DirRecord(0, 2, True, (), {})
        >>> snap = Snapshot({"/r": top, "/r/a": a})
        >>> [path for path, _ in snap.subtree("/r")], snap.subtree("/elsewhere")
        (['/r', '/r/a'], [])
        """
        found = []
        stack = [path]
        while stack:
            p = stack.pop()
            d = self.dirs.get(p)
            if d is not None:
                found.append((p, d))
                base = below(p)
                stack.extend(base + name for name in d.subdirs)
        return found


@dataclass(frozen=True)
class Problem:
    """A directory (or root) that could not be read in a sweep; its last known state was kept."""

    path: str
    error: OSError

    @property
    def dead_mount(self) -> bool:
        """True if the file system stopped answering (a killed FUSE daemon, a lost server)."""
        return is_dead_mount(self.error)


def diff_files(
    base: str, old: dict[str, FileKey], new: dict[str, FileKey], *, remounted: bool = False
) -> list[Change]:
    """The changes that turn one directory's files ``old`` into ``new`` (keys are names).

    ``remounted``: the directory is on a new device since ``old`` was seen, so inode numbers
    don't count (a remount renumbers them; only content metadata says what changed).

    >>> [(c.kind.value, c.path) for c in diff_files("/r/", {"x": 1, "y": 2}, {"x": 5, "z": 3})]
    [('modified', '/r/x'), ('added', '/r/z'), ('deleted', '/r/y')]
    """
    changes = []
    for name, key in new.items():
        before = old.get(name)
        if before is None:
            changes.append(Change(ChangeKind.ADDED, base + name, Source.STAT))
        elif before != key and not (remounted and same_content(before, key)):
            changes.append(Change(ChangeKind.MODIFIED, base + name, Source.STAT))
    changes.extend(
        Change(ChangeKind.DELETED, base + name, Source.STAT) for name in old.keys() - new.keys()
    )
    return changes
