"""SIGINT and SIGTERM as cancellation: for the CLI, and for the blocking ``serve()``, which owns
the process while it runs (the rest of the library never touches signals)."""

from __future__ import annotations

import signal

import anyio
from anyio.abc import TaskStatus

__all__ = ["cancel_on_signals"]


async def cancel_on_signals(
    scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Cancel ``scope`` at the first SIGINT or SIGTERM (call from the main thread).

    Start it with ``await tg.start(...)``: it is started once the handlers are in place. Until
    then a Ctrl-C is a KeyboardInterrupt raised wherever the loop happens to be (on trio, inside
    whichever task runs), so nothing that may block should start before.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return
