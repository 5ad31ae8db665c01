"""What this operating system gives asyncreload, in one place.

Linux has it all. Elsewhere ``import asyncreload`` and ``watch`` must still work, so nothing here
or in the modules that use it may touch a POSIX- or Linux-only name at import time; what can't
be done is said in one line when it is asked for (see :func:`process_trees_missing`).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Literal

__all__ = [
    "CTIME_IS_CHANGE",
    "DIR_FD",
    "DIR_FLAGS",
    "JUNCTIONS",
    "LINUX",
    "MACOS",
    "WINDOWS",
    "OSErrorKind",
    "is_dead_mount",
    "is_gone",
    "is_junction",
    "is_junction_stat",
    "is_link",
    "is_link_path",
    "is_unresolvable_link",
    "os_error_kind",
    "process_trees_missing",
]

LINUX = sys.platform.startswith("linux")
MACOS = sys.platform == "darwin"
WINDOWS = sys.platform == "win32"

DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
"""How to open a directory for reading its entries and stat'ing them through it (``dir_fd``)."""

DIR_FD = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd
"""Can a directory be read through a descriptor (``scandir(fd)``, ``stat(name, dir_fd=fd)``)?
Linux and macOS: yes. Windows: no (``os.open`` can't open a directory there), so the stat poller
reads directories by their paths. It reads this at each directory it opens, so a test can set
it False and sweep the portable way on Linux."""

CTIME_IS_CHANGE = not WINDOWS
"""Is ``st_ctime`` the time of the last change to a file's metadata (POSIX: a chmod, a rename,
every write)? On Windows it is the file's creation time (Python 3.12 gives that as
``st_birthtime`` and deprecates ``st_ctime`` for it), which no edit changes: the poller's file
key then leaves it out (see :func:`asyncreload._watch.snapshot.file_key`). Read at each use, so
a test can set it False and key files the Windows way on Linux."""


# --- Directory junctions ---------------------------------------------------------------------

JUNCTIONS = WINDOWS
"""Are there directory junctions (Windows's other kind of directory link, which
:meth:`os.DirEntry.is_symlink` and :func:`os.path.islink` don't count)? The walkers treat one as
a symlinked directory (walked after the real ones, counted for the bound: see walk.py). Read at
each use, so a test can set it True on Linux."""

FILE_ATTRIBUTE_REPARSE_POINT = 0x400
IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003
"""A junction's reparse tag (a symlink's is IO_REPARSE_TAG_SYMLINK, 0xA000000C)."""


def is_junction_stat(st: os.stat_result) -> bool:
    """Is this ``lstat`` (``follow_symlinks=False``) a junction's? Windows's fields; False where
    they are missing."""
    attributes: int = getattr(st, "st_file_attributes", 0)
    tag: int = getattr(st, "st_reparse_tag", 0)
    return bool(attributes & FILE_ATTRIBUTE_REPARSE_POINT) and tag == IO_REPARSE_TAG_MOUNT_POINT


def is_junction(entry: os.DirEntry[str]) -> bool:
    """Is the directory entry a junction? :meth:`os.DirEntry.is_junction` (3.12+), else its
    ``lstat``'s attributes (which ``scandir`` on Windows has without a system call)."""
    check = getattr(entry, "is_junction", None)
    if check is not None:
        return bool(check())
    try:
        return is_junction_stat(entry.stat(follow_symlinks=False))
    except OSError:
        return False


def is_link(entry: os.DirEntry[str]) -> bool:
    """Is the directory entry a symlink, or (where there are any) a junction?"""
    return entry.is_symlink() or (JUNCTIONS and is_junction(entry))


def is_link_path(path: str) -> bool:
    """Is ``path`` a symlink, or (where there are any) a junction?"""
    if os.path.islink(path):
        return True
    if not JUNCTIONS:
        return False
    check = getattr(os.path, "isjunction", None)  # 3.12+
    if check is not None:
        return bool(check(path))
    try:
        return is_junction_stat(os.lstat(path))
    except OSError:
        return False


# --- OSError classification ------------------------------------------------------------------
#
# On Windows, os functions raise OSError with ``winerror`` set, and Python derives ``errno`` from
# it (PC/errmap.h) only roughly: a share that went away (ERROR_BAD_NETPATH, 53) becomes ENOENT,
# as if the file had been deleted; a drive that isn't ready (ERROR_NOT_READY, 21) becomes EACCES;
# most network errors become EINVAL. So where ``winerror`` is set and known, it decides; the errno
# decides otherwise (POSIX, and winerrors not listed here, whose errno is then as good as any).

_DEAD_MOUNT_ERRNOS = frozenset(
    {errno.ENOTCONN, errno.ECONNABORTED, errno.ESTALE, errno.EHOSTDOWN, errno.EIO}
)
_GONE_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})
_UNRESOLVABLE_ERRNOS = frozenset({errno.ELOOP})

_WIN_GONE = frozenset({2, 3, 267})
"""ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND, ERROR_DIRECTORY (not a directory)."""
_WIN_DEAD_MOUNT = frozenset({21, 51, 53, 55, 59, 64, 67, 121, 1222, 1231, 1232})
"""ERROR_NOT_READY, ERROR_REM_NOT_LIST, ERROR_BAD_NETPATH, ERROR_DEV_NOT_EXIST,
ERROR_UNEXP_NET_ERR, ERROR_NETNAME_DELETED, ERROR_BAD_NET_NAME, ERROR_SEM_TIMEOUT (an SMB server
that stopped answering), ERROR_NO_NETWORK, ERROR_NETWORK_UNREACHABLE, ERROR_HOST_UNREACHABLE."""
_WIN_UNRESOLVABLE = frozenset({1920, 1921})
"""ERROR_CANT_ACCESS_FILE (a reparse point the system can't follow), ERROR_CANT_RESOLVE_FILENAME
(too many reparse points: a symlink or junction loop)."""

OSErrorKind = Literal["gone", "dead mount", "unresolvable link", "other"]
"""What an OSError from a stat or a listing means to a watcher (see :func:`os_error_kind`)."""


def os_error_kind(error: OSError) -> OSErrorKind:
    """What ``error`` means, on any system: ``gone`` (the path is not there, or no longer a
    directory), ``dead mount`` (the file system stopped answering: a killed FUSE daemon, a
    lost server or share), ``unresolvable link`` (a symlink or junction that can't be followed:
    a loop), or ``other`` (denied, and the rest: the path is there).

    >>> os_error_kind(OSError(errno.ENOENT, "gone")), os_error_kind(OSError(errno.EIO, "I/O"))
    ('gone', 'dead mount')
    >>> share_lost = OSError(errno.ENOENT, "The network path was not found")
    >>> share_lost.winerror = 53  # Windows sets this, and ENOENT from it
    >>> os_error_kind(share_lost)
    'dead mount'
    """
    winerror = getattr(error, "winerror", None)
    if winerror is not None:
        if winerror in _WIN_GONE:
            return "gone"
        if winerror in _WIN_DEAD_MOUNT:
            return "dead mount"
        if winerror in _WIN_UNRESOLVABLE:
            return "unresolvable link"
    code = error.errno
    if code in _GONE_ERRNOS:
        return "gone"
    if code in _DEAD_MOUNT_ERRNOS:
        return "dead mount"
    if code in _UNRESOLVABLE_ERRNOS:
        return "unresolvable link"
    return "other"


def is_gone(error: OSError) -> bool:
    """The path is not there (any more), or is not a directory where one was needed."""
    return os_error_kind(error) == "gone"


def is_dead_mount(error: OSError) -> bool:
    """The file system is not answering: not "the path is gone"."""
    return os_error_kind(error) == "dead mount"


def is_unresolvable_link(error: OSError) -> bool:
    """A symlink (or junction) on the way can't be followed: a loop, most often."""
    return os_error_kind(error) == "unresolvable link"


def process_trees_missing(what: str) -> str | None:
    """Why ``what`` (``run``, ``serve``) can't keep its promise of no orphans here, or None.

    It makes its guard (or worker) a child subreaper, and walks ``/proc`` to find what the
    command started: Linux's, both.
    """
    if LINUX:
        return None
    return (
        f"asyncreload {what} needs Linux: it stops everything a command started by making "
        "itself their subreaper (prctl) and reading /proc, which this system does not have"
    )
