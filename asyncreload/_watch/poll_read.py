"""One directory as the stat poller reads it: opened through a descriptor or by path (the one
place that knows which), listed, and its files stat'ed into keys (:mod:`.snapshot`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager

from .. import _platform
from .._platform import DIR_FLAGS, is_dead_mount, is_gone, os_error_kind
from .._types import Change, ChangeKind, Source
from .paths import below
from .snapshot import UNREADABLE, FileKey, file_key, same_content, windows_file_key

__all__ = ["OpenDir", "restat", "stat_all", "stat_name"]


class OpenDir:
    """A directory open for one read: its own stat, its listing, and how to stat its entries.

    Through a descriptor where the system has them (:data:`asyncreload._platform.DIR_FD`):
    ``stat(name, dir_fd=fd)``, and the kernel resolves one name, not the whole path again. On
    FUSE, where each component costs a round trip to the daemon, that makes a sweep 2-3x faster.
    Elsewhere (Windows) by path, ``stat(prefix + name)``, with the listing opened at once as the
    descriptor is: a directory that can't be read fails here either way, before its files are
    stat'ed (and its subdirectories walked). Raises ENOTDIR if ``path`` is not a directory.
    """

    __slots__ = ("_listing", "fd", "prefix", "st")

    def __init__(self, path: str) -> None:
        fd: int | None = None
        if _platform.DIR_FD:
            fd = os.open(path, DIR_FLAGS)  # O_DIRECTORY, where there is one: ENOTDIR for a file
            try:
                st = os.fstat(fd)
            except BaseException:
                os.close(fd)
                raise
        else:
            st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            if fd is not None:
                os.close(fd)
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        self.st = st
        self.fd = fd
        """The descriptor the entries are stat'ed through (``dir_fd``); None: by path."""
        self.prefix = "" if fd is not None else below(path)
        """What an entry's name goes after to stat it: nothing through ``fd``, else the path."""
        self._listing = None if fd is not None else os.scandir(path)

    def listing(self) -> AbstractContextManager[Iterator[os.DirEntry[str]]]:
        """The entries, to be read once."""
        if self.fd is not None:
            # scandir(fd) consumes the descriptor's position, not the descriptor: ours stays open.
            return os.scandir(self.fd)
        assert self._listing is not None
        return self._listing

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        if self._listing is not None:
            self._listing.close()


def stat_name(name: str, fd: int | None = None) -> os.stat_result | None:
    """``name``'s stat (in directory ``fd``, if given); None if it is gone.

    A dangling or looping symlink is watched as the link itself. Any other error raises: a
    file that can't be stat'ed (EACCES, EPERM, ETIMEDOUT, ...) has not gone away, and a file
    system that stopped answering is a problem for the whole directory.
    """
    try:
        return os.stat(name, dir_fd=fd)
    except OSError as e:
        if os_error_kind(e) in ("gone", "unresolvable link"):
            try:
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError as e2:
                if is_gone(e2):
                    return None
                raise
        raise


def stat_all(
    opened: OpenDir, entries: list[tuple[str, bool]], known: dict[str, FileKey]
) -> tuple[tuple[str, ...], dict[str, FileKey], OSError | None]:
    """Stat every listed file; return the subdirectories to walk, the files' keys, and the
    first error that left a file with its ``known`` key (or :data:`UNREADABLE`)."""
    subdirs = []
    files = {}
    unreadable = None
    fd, prefix = opened.fd, opened.prefix
    for name, is_dir in entries:
        if is_dir:
            subdirs.append(name)
            continue
        try:
            st = stat_name(prefix + name, fd)
        except OSError as e:
            if is_dead_mount(e):
                raise
            files[name] = known.get(name, UNREADABLE)
            unreadable = unreadable or e
            continue
        if st is None:
            continue  # vanished between the listing and the stat
        if stat.S_ISDIR(st.st_mode):  # a symlink to a directory, or a type change
            subdirs.append(name)
        else:
            files[name] = file_key(st)
    return tuple(subdirs), files, unreadable


def restat(
    opened: OpenDir, base: str, known: dict[str, FileKey], *, remounted: bool = False
) -> tuple[dict[str, FileKey], list[Change], OSError | None] | None:
    """Stat the files of a directory whose listing is unchanged, and compare.

    This is the hot loop of every idle sweep, so it does no more than a reloader with a fixed
    file list would: one stat and one comparison per file. Returns ``known`` itself when nothing
    changed; None if a name turned into a directory (the listing must be read again). A file
    that can't be stat'ed keeps its key; the first such error is returned. ``remounted``: a new
    inode number alone is taken in quietly (see :func:`diff_files`).
    """
    changed: dict[str, FileKey] | None = None
    changes = []
    unreadable = None
    stat_, fd, prefix = os.stat, opened.fd, opened.prefix
    ctime_counts = _platform.CTIME_IS_CHANGE
    for name, key in known.items():
        try:
            st = stat_(prefix + name, dir_fd=fd)
        except OSError:
            try:
                retried = stat_name(prefix + name, fd)
            except OSError as e:
                if is_dead_mount(e):
                    raise
                unreadable = unreadable or e
                continue
            if retried is None:  # deleted since we read the directory's mtime
                if changed is None:
                    changed = dict(known)
                del changed[name]
                changes.append(Change(ChangeKind.DELETED, base + name, Source.STAT))
                continue
            st = retried
        if ctime_counts:
            # file_key(), inlined: the call alone is a fifth of this loop's time.
            new_key = (
                (st.st_mtime_ns << 192) | (st.st_ctime_ns << 128) | (st.st_size << 64) | st.st_ino
            )
        else:
            new_key = windows_file_key(st)  # st_ctime is no change time there
        if new_key != key:
            if stat.S_ISDIR(st.st_mode):
                return None
            if changed is None:
                changed = dict(known)
            changed[name] = new_key
            if not (remounted and same_content(key, new_key)):
                changes.append(Change(ChangeKind.MODIFIED, base + name, Source.STAT))
    return (known if changed is None else changed), changes, unreadable
