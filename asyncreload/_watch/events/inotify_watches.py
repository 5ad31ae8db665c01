"""Which directory each inotify watch descriptor stands for, and back."""

from __future__ import annotations

import posixpath

from ..names import KnownNames
from .inotify_bindings import rm_watch

__all__ = ["Watches"]


class Watches:
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
