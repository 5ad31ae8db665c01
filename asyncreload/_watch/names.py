"""Which names each watched directory holds, as the event sources last saw them.

A rename onto an existing name (an editor's or ``sed -i``'s atomic save: write a temporary file,
rename it over the old one) raises the same event as a new file moved in: "a name arrived". Only
knowing that the name was there before tells a modification from an addition, as the stat
poller's snapshot does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .._types import ChangeKind

__all__ = ["KnownNames"]


class KnownNames:
    """The names in each directory, kept up to date from the events.

    >>> names = KnownNames()
    >>> names.listed("/p", ["app.py"])
    >>> names.arrived("/p/app.py"), names.arrived("/p/new.py")
    (<ChangeKind.MODIFIED: 'modified'>, <ChangeKind.ADDED: 'added'>)
    >>> names.left("/p/new.py"); names.arrived("/p/new.py")
    <ChangeKind.ADDED: 'added'>
    """

    def __init__(self) -> None:
        self._dirs: dict[str, set[str]] = {}

    def listed(self, directory: str, names: Iterable[str]) -> None:
        """``directory`` was listed: these are its names."""
        self._dirs[directory] = set(names)

    def arrived(self, path: str) -> ChangeKind:
        """A name arrived at ``path`` (created, or renamed there): modified if it was there."""
        directory, name = os.path.split(path)
        names = self._dirs.setdefault(directory, set())
        if name in names:
            return ChangeKind.MODIFIED
        names.add(name)
        return ChangeKind.ADDED

    def left(self, path: str) -> None:
        """The name at ``path`` went (deleted, or renamed away)."""
        directory, name = os.path.split(path)
        names = self._dirs.get(directory)
        if names is not None:
            names.discard(name)

    def forget(self, directory: str) -> None:
        """``directory`` is no longer watched (nor, by the caller, anything below it)."""
        self._dirs.pop(directory, None)
