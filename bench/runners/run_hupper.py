"""Runner: hupper's ``PollingFileMonitor`` over every .py file in the tree, listed at start.

hupper watches the files it is told about (normally the imported modules); a file created later
is never added, which is what this runner reproduces.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable

from _emit import emit, emit_batch
from hupper.polling import PollingFileMonitor  # type: ignore[import-untyped]


class _BenchMonitor(PollingFileMonitor):  # type: ignore[misc]
    def __init__(self, interval: float) -> None:
        super().__init__(callback=self._on_change, interval=interval)
        self._changed: list[str] = []
        self._first_change_at = 0.0
        self._passes = 0

    def _on_change(self, path: str) -> None:
        if not self._changed:
            self._first_change_at = time.monotonic()
        self._changed.append(path)

    def check_reload(self, paths: list[str]) -> None:
        t0 = time.monotonic()
        super().check_reload(paths)
        emit("sweep", seconds=time.monotonic() - t0)
        self._passes += 1
        if self._passes == 1:
            emit("armed")  # the first pass only records mtimes
        if self._changed:
            # hupper's reloader restarts the worker once per pass that reported anything.
            emit_batch(self._first_change_at, (("modified", p) for p in self._changed))
            self._changed = []


def _py_files(tree: str) -> Iterable[str]:
    for root, _dirs, files in os.walk(tree):
        yield from (os.path.join(root, name) for name in files if name.endswith(".py"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    monitor = _BenchMonitor(args.interval)
    for path in _py_files(args.tree):
        monitor.add_path(path)
    monitor.start()
    monitor.join()


if __name__ == "__main__":
    main()
