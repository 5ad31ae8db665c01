"""The values that flow from the watchers to the consumer."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Backend", "Change", "ChangeKind", "Source"]


class ChangeKind(str, enum.Enum):
    """What happened to a path."""

    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"

    def __str__(self) -> str:
        return self.value


class Source(str, enum.Enum):
    """Which of the two watchers saw a change."""

    STAT = "stat"
    """The stat poller: it compares snapshots of (mtime, size, inode)."""
    EVENTS = "events"
    """The kernel event stream: inotify read directly on Linux, watchfiles' backend elsewhere."""

    def __str__(self) -> str:
        return self.value


Backend = Source
"""The way a path is watched; the same two values as :class:`Source`."""


@dataclass(frozen=True, order=True)
class Change:
    """One path that changed, in a batch.

    >>> print(Change(ChangeKind.MODIFIED, "/srv/app/main.py", Source.EVENTS))
    modified /srv/app/main.py (events)
    """

    kind: ChangeKind
    path: str
    """Absolute path."""
    source: Source

    def __str__(self) -> str:
        return f"{self.kind.value} {self.path} ({self.source.value})"

    def to_json(self) -> dict[str, str]:
        """The JSON form used by ``asyncreload watch --json``."""
        return {"change": self.kind.value, "path": self.path, "source": self.source.value}
