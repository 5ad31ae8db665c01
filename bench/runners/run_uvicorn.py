"""Runner: uvicorn's reload supervisors' change detection (StatReload or WatchFilesReload).

Driven as uvicorn's own tests drive it: a ``Config`` with ``reload_dirs`` and repeated
``should_restart()`` calls; the app process is never started.
"""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path
from typing import Any

import watchfiles.main
from _emit import emit, emit_batch
from uvicorn.config import Config
from uvicorn.supervisors.statreload import StatReload
from uvicorn.supervisors.watchfilesreload import WatchFilesReload

_RustNotify = watchfiles.main.RustNotify  # type: ignore[attr-defined]


def _armed_rust_notify(*args: Any, **kwargs: Any) -> Any:
    # WatchFilesReload builds watchfiles.watch() in __init__, but the generator only creates its
    # RustNotify on the first should_restart(); that is when the watches are in place.
    notify = _RustNotify(*args, **kwargs)
    emit("armed")
    return notify


def _never_started(sockets: list[socket.socket] | None) -> None:
    raise AssertionError("the benchmark never starts the app process")


class _TimedStatReload(StatReload):
    """StatReload that notes when its sweep starts: right after the reload_delay pause."""

    sweep_started = 0.0

    def pause(self) -> None:
        super().pause()
        self.sweep_started = time.monotonic()


def run_stat(config: Config) -> None:
    reloader = _TimedStatReload(config, target=_never_started, sockets=[])
    armed = False
    while True:
        changed = reloader.should_restart()
        t = time.monotonic()
        if changed is None:
            emit("sweep", seconds=t - reloader.sweep_started)
            if not armed:
                # The first pass after (re)start only records mtimes: from now on edits count.
                emit("armed")
                armed = True
            continue
        emit_batch(t, (("modified", str(p)) for p in changed))
        # What StatReload.restart() does before starting the new process: forget all mtimes, so
        # the next pass only records them again. The harness waits for "armed" once more.
        reloader.mtimes = {}
        armed = False


def run_watchfiles(config: Config) -> None:
    watchfiles.main.RustNotify = _armed_rust_notify  # type: ignore[attr-defined,assignment]
    reloader = WatchFilesReload(config, target=_never_started, sockets=[])
    while True:
        changed = reloader.should_restart()
        if changed:
            emit_batch(time.monotonic(), (("modified", str(p)) for p in changed))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", required=True)
    parser.add_argument("--reloader", choices=["stat", "watchfiles"], required=True)
    args = parser.parse_args()
    config = Config(app="bench:app", reload=True, reload_dirs=[str(Path(args.tree))])
    if args.reloader == "stat":
        run_stat(config)
    else:
        run_watchfiles(config)


if __name__ == "__main__":
    main()
