"""Runner: ``asyncreload.open_watcher`` (auto mode, or every path forced to polling).

Besides the batches it reports two things only the watcher's own process can see:

- each sweep's duration, where a path is polled;
- the longest event-loop stall: between SIGUSR1 and SIGUSR2 a ticker sleeps 1 ms in a loop and
  records the longest gap between wake-ups (the harness turns it on only for that window, since
  a 1 kHz ticker would show up in the idle CPU figure).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import signal
import time
from pathlib import Path
from typing import Any

import anyio
from _emit import emit, emit_batch

import asyncreload


def _source_digest() -> str:
    """A short hash of the asyncreload source this process imported.

    The package is often an editable install of a checkout that changes while a long run goes
    on; the report says when its rows did not all measure the same code.
    """
    digest = hashlib.sha1()
    for path in sorted(Path(asyncreload.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def _report_sweep(seconds: float, files: int) -> None:
    emit("sweep", seconds=seconds, files=files)


def _time_sweeps() -> dict[str, Any]:
    """Arrange for each sweep's duration to be reported; return extra open_watcher kwargs.

    A public ``on_sweep`` hook is used if open_watcher has one. Otherwise the private sweep
    method is wrapped: the benchmark may lean on internals, the library must not lean on it.
    """
    if "on_sweep" in inspect.signature(asyncreload.open_watcher).parameters:
        return {"on_sweep": _report_sweep}
    try:
        from asyncreload._watch.poll import Sweeper
    except ImportError:
        return {}
    original = getattr(Sweeper, "sweep_parallel", None)
    if original is None:
        return {}

    @functools.wraps(original)
    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        result = await original(self, *args, **kwargs)
        seconds = time.monotonic() - t0
        snapshot = result[0]
        # count(), not len(files): files is built on demand, and building it for 100,000 files
        # on the event loop would show up as a stall of asyncreload's own.
        count = getattr(snapshot, "count", None)
        _report_sweep(seconds, count() if callable(count) else len(getattr(snapshot, "files", ())))
        return result

    Sweeper.sweep_parallel = timed  # type: ignore[method-assign]
    return {}


class _Ticker:
    """Measures the longest gap between 1 ms sleeps while it runs."""

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None
        self.max_gap = 0.0
        self.ticks = 0

    async def run(self) -> None:
        self.max_gap, self.ticks = 0.0, 0
        with anyio.CancelScope() as self.scope:
            last = time.monotonic()
            while True:
                await anyio.sleep(0.001)
                now = time.monotonic()
                self.max_gap = max(self.max_gap, now - last)
                self.ticks += 1
                last = now


async def _serve_signals(
    tg: anyio.abc.TaskGroup, *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    ticker = _Ticker()
    with anyio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGUSR1 and ticker.scope is None:
                tg.start_soon(ticker.run)
            elif signum == signal.SIGUSR2 and ticker.scope is not None:
                ticker.scope.cancel()
                ticker.scope = None
                emit("stall", max_gap=ticker.max_gap, ticks=ticker.ticks)


async def watch(args: argparse.Namespace) -> None:
    emit("source", digest=_source_digest())
    options: dict[str, Any] = _time_sweeps()
    if args.force_polling:
        options["force_polling"] = True
    if args.poll_interval is not None:
        options["poll_interval"] = args.poll_interval
    if args.poll_cpu is not None:
        options["poll_cpu"] = args.poll_cpu
    async with anyio.create_task_group() as tg:
        await tg.start(_serve_signals, tg)
        async with asyncreload.open_watcher(args.tree, **options) as changes:
            emit("armed")
            async for batch in changes:
                t = time.monotonic()
                sources = sorted({c.source.value for c in batch})
                emit_batch(t, ((c.kind.value, c.path) for c in batch), sources=sources)
        tg.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", required=True)
    parser.add_argument("--force-polling", action="store_true")
    parser.add_argument("--poll-interval", type=float)
    parser.add_argument("--poll-cpu", type=float)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(watch, args, backend=args.backend)


if __name__ == "__main__":
    main()
