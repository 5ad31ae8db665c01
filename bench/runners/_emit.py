"""The runner side of the line protocol: one JSON object per line on stdout.

Every line carries ``t``, the runner's ``time.monotonic()`` when the event happened. The harness
compares it with its own ``time.monotonic()``: on Linux both read CLOCK_MONOTONIC, which is one
clock for every process on the machine, so write-to-reported latency needs no clock sync.

Events: ``armed`` (watches in place, first snapshot taken: changes from now on count),
``batch`` (one reported batch, i.e. one restart: ``paths`` is a list of ``[kind, path]``),
``sweep`` (one full stat pass took ``seconds``), ``stall`` (longest event-loop gap).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterable

__all__ = ["emit", "emit_batch"]

# Pollers call back from their own threads (hupper); keep each line whole.
_lock = threading.Lock()


def emit(event: str, *, t: float | None = None, **fields: object) -> None:
    """Write one event line and flush it, so the harness sees it at once."""
    record = {"ev": event, "t": time.monotonic() if t is None else t, **fields}
    line = json.dumps(record, separators=(",", ":"))
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def emit_batch(t: float, changes: Iterable[tuple[str, str]], **fields: object) -> None:
    """One reported batch: ``changes`` are ``(kind, absolute path)`` pairs, detected at ``t``."""
    emit("batch", t=t, paths=[[kind, path] for kind, path in changes], **fields)
