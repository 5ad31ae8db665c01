"""SIGINT and SIGTERM as cancellation: for the CLI, and for the blocking ``serve()``, which owns
the process while it runs (the rest of the library never touches signals)."""

from __future__ import annotations

import signal

import anyio

__all__ = ["cancel_on_signals"]


async def cancel_on_signals(scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` at the first SIGINT or SIGTERM (call from the main thread)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return
