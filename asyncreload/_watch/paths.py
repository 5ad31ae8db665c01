r"""How paths are spelled: what lies below what, a directory's entries, a path as the filters see
it, made absolute, resolved.

The watcher's modules compare and build paths through these rules, never with a ``"/"`` of their
own: on Windows the separator is ``\``, case doesn't count, and an absolute path begins with a
drive (``C:\``) or a network share (``\\server\share\``). The pure rules take the path module,
:mod:`os.path` by default, so that Windows's (:mod:`ntpath`) are tested on any system.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from .._exceptions import PathNotFoundError

__all__ = [
    "CWD_GONE",
    "PathModule",
    "absolute",
    "below",
    "current_directory",
    "filter_relpath",
    "is_below",
    "is_within",
    "network_share",
    "normalise",
]


class PathModule(Protocol):
    """What the rules use of a path module: :mod:`os.path`, or :mod:`ntpath` in a test."""

    @property
    def sep(self) -> str: ...
    def normcase(self, s: str, /) -> str: ...
    def isabs(self, s: str, /) -> bool: ...
    def join(self, a: str, /, *paths: str) -> str: ...
    def normpath(self, path: str, /) -> str: ...
    def abspath(self, path: str, /) -> str: ...
    def splitdrive(self, p: str, /) -> tuple[str, str]: ...


def below(directory: str, paths: PathModule = os.path) -> str:
    r"""What the paths of ``directory``'s entries begin with: it, and one separator.

    >>> import ntpath
    >>> below("/p"), below("/"), below("C:\\p", ntpath), below("C:\\", ntpath)
    ('/p/', '/', 'C:\\p\\', 'C:\\')
    """
    return directory.rstrip(paths.sep) + paths.sep


def is_within(path: str, parent: str, paths: PathModule = os.path) -> bool:
    r"""True if ``path`` is ``parent`` or lies below it (both absolute and normalised). Case
    counts only where the OS says it does (not on Windows).

    >>> is_within("/p/app/m.py", "/p/app"), is_within("/p/app2", "/p/app"), is_within("/p", "/")
    (True, False, True)
    >>> import ntpath
    >>> is_within("c:\\Proj\\App\\m.py", "C:\\proj\\app", ntpath)
    True
    """
    path, parent = paths.normcase(path), paths.normcase(parent)
    return path == parent or path.startswith(below(parent, paths))


def is_below(path: str, parent: str, paths: PathModule = os.path) -> bool:
    """True if ``path`` lies below ``parent``, and is not ``parent`` itself (in any case)."""
    return paths.normcase(path) != paths.normcase(parent) and is_within(path, parent, paths)


def filter_relpath(root: str, paths: PathModule = os.path) -> Callable[[str], str]:
    r"""The function that gives a path below ``root`` as the filters see it: relative to
    ``root``, ``/``-separated (as ``--exclude`` and ``--include`` globs are written everywhere).

    >>> import ntpath
    >>> filter_relpath("/p")("/p/src/m.py"), filter_relpath("C:\\p", ntpath)("C:\\p\\src\\m.py")
    ('src/m.py', 'src/m.py')
    """
    start = len(below(root, paths))
    sep = paths.sep
    if sep == "/":
        return lambda path: path[start:]
    return lambda path: path[start:].replace(sep, "/")


def network_share(path: str, paths: PathModule = os.path) -> str | None:
    r"""The network share a UNC path lies on (``\\server\share``); None for any other path, and
    always where paths have no drives (POSIX: ``//server/share`` is a local path).

    >>> import ntpath
    >>> network_share("\\\\nas\\code\\app", ntpath), network_share("C:\\app", ntpath)
    ('\\\\nas\\code', None)
    >>> network_share("//nas/code/app") is None
    True
    """
    drive = paths.splitdrive(path)[0]
    # \\?\C:\... and \\.\device are device paths (realpath leaves them as they were given).
    if drive[:2] != "\\\\" or drive[2:3] in ("?", "."):
        return None
    return drive


def normalise(path: str) -> str:
    r"""Absolute, symlink-free, normalised: what :func:`~.plan.plan` expects.

    Windows's :func:`os.path.realpath` turns a mapped network drive into its share (``Z:\app`` to
    ``\\nas\code\app``), which :func:`network_share` then knows as one.
    """
    return os.path.realpath(absolute(path))


def absolute(path: str, paths: PathModule = os.path) -> str:
    r"""``path`` made absolute (as :func:`os.path.abspath`), with :func:`current_directory`'s error
    for a relative one when the current directory is gone.

    On Windows, ``\src`` is on the current directory's drive, ``C:src`` is below the current
    directory when that is on C:, and ``D:src`` below D:'s own current directory, which only
    Windows knows (:func:`ntpath.abspath` asks it).
    """
    if _qualified(path, paths):
        return paths.normpath(path)
    joined = paths.join(current_directory(), path)
    if not _qualified(joined, paths):
        return paths.abspath(joined)
    return paths.normpath(joined)


def _qualified(path: str, paths: PathModule) -> bool:
    # Absolute, and where paths have drives (a "\" separator: Windows), on one: Python before
    # 3.13 calls "\src" absolute, though it is on whichever drive is the current one.
    return paths.isabs(path) and (paths.sep == "/" or bool(paths.splitdrive(path)[0]))


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
