"""How asyncreload and its child programs (the guard, the workers) frame their messages: one JSON
object per line. Standard library only: the guard imports it as a top-level module.

The words each protocol uses are in ``_run/guard_protocol.py`` and ``_serve/worker_protocol.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_LINE", "Lines", "encode"]

MAX_LINE = 1 << 24
"""The longest message (16 MiB): a command's environment, a worker's list of modules."""


def encode(message: Mapping[str, Any]) -> bytes:
    """``message`` as one line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class Lines:
    """Cuts what arrives from the other end into messages.

    >>> lines = Lines()
    >>> lines.feed(b'{"op": "go"}\\n{"op"')
    >>> lines.next(), lines.next()
    ({'op': 'go'}, None)
    >>> lines.feed(b': "stop"}\\n')
    >>> lines.next()
    {'op': 'stop'}
    """

    def __init__(self, limit: int = MAX_LINE) -> None:
        self._pending = b""
        self._limit = limit

    def feed(self, data: bytes) -> None:
        self._pending += data

    def next(self) -> dict[str, Any] | None:
        """The next whole message, or None until more arrives. ValueError for a line that is
        not a JSON object, or one longer than the limit; either is dropped, so the next call
        goes on with what follows it."""
        line, newline, rest = self._pending.partition(b"\n")
        if not newline:
            if len(self._pending) > self._limit:
                self._pending = b""
                raise ValueError(f"a message longer than {self._limit} bytes")
            return None
        self._pending = rest
        message = json.loads(line)
        if not isinstance(message, dict):
            # A ValueError, as for a line that is not JSON: both are bad input from the other end.
            raise ValueError(f"not a message: {line[:80]!r}")  # noqa: TRY004
        return message
