"""How paths are spelled: below a directory, made absolute, resolved.

The watcher's modules compare and build paths only through these rules, so the walkers, the
plan and the log lines agree on what lies below what.
"""

from __future__ import annotations

import os
import posixpath

from .._exceptions import PathNotFoundError

__all__ = ["CWD_GONE", "absolute", "current_directory", "is_within", "normalise"]


def is_within(path: str, parent: str) -> bool:
    """True if ``path`` is ``parent`` or lies below it (both absolute and normalised)."""
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def normalise(path: str) -> str:
    """Absolute, symlink-free, normalised: what :func:`~.plan.plan` expects."""
    return posixpath.realpath(absolute(path))


def absolute(path: str) -> str:
    """``path`` made absolute (as :func:`os.path.abspath`), with :func:`current_directory`'s error
    for a relative one when the current directory is gone."""
    if posixpath.isabs(path):
        return posixpath.normpath(path)
    return posixpath.normpath(posixpath.join(current_directory(), path))


def current_directory() -> str:
    """:func:`os.getcwd`; :class:`PathNotFoundError`, in words a user can act on, when the
    directory was deleted (the process's cwd is then a removed inode, and has no path)."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        raise PathNotFoundError(CWD_GONE) from None


CWD_GONE = (
    "the current directory no longer exists (it was deleted, or its file system unmounted): "
    "cd somewhere that exists"
)
