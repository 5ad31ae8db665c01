"""The values that flow from the watchers to the consumer."""

from __future__ import annotations

import base64
import enum
import os
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
        """The JSON form (``asyncreload watch --json``, ``ASYNCRELOAD_CHANGES``): strict JSON,
        and lossless.

        A file name is bytes; one that isn't valid UTF-8 can't be a JSON string as it is (Python
        holds it with lone surrogates, which strict parsers reject). Then ``path`` shows the bad
        bytes as U+FFFD, for display, and ``path_bytes`` is the exact name, base64-encoded.

        >>> entry = Change(ChangeKind.ADDED, os.fsdecode(b"/s/\\xff.py"), Source.EVENTS).to_json()
        >>> entry["path"], entry["path_bytes"]
        ('/s/\ufffd.py', 'L3Mv/y5weQ==')
        """
        entry = {"change": self.kind.value, "path": self.path, "source": self.source.value}
        try:
            self.path.encode("utf-8")
        except UnicodeEncodeError:
            raw = os.fsencode(self.path)
            entry["path"] = raw.decode("utf-8", "replace")
            entry["path_bytes"] = base64.b64encode(raw).decode("ascii")
        return entry
