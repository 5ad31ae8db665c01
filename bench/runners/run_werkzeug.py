"""Runner: werkzeug's stat reloader loop (``StatReloaderLoop``) with the tree as an extra path.

werkzeug's ``trigger_reload`` exits the process (status 3) so that the parent re-executes it; here
it records the change instead and the loop goes on, one reported batch per step that found any.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from _emit import emit, emit_batch
from werkzeug._reloader import StatReloaderLoop


class _BenchStatLoop(StatReloaderLoop):
    def __init__(self, tree: str, interval: float) -> None:
        super().__init__(extra_files=[tree], interval=interval)
        self._changed: list[str] = []
        self._first_change_at = 0.0
        self._steps = 0

    def trigger_reload(self, filename: str) -> None:
        if not self._changed:
            # The real loop exits right here: this is when werkzeug would restart.
            self._first_change_at = time.monotonic()
        self._changed.append(filename)
        # Remember the new mtime, as the re-executed process would, so it is reported once.
        self.mtimes[filename] = os.stat(filename).st_mtime

    def run_step(self) -> None:
        t0 = time.monotonic()
        super().run_step()
        emit("sweep", seconds=time.monotonic() - t0)
        self._steps += 1
        if self._steps == 1:
            emit("armed")  # __enter__ runs the first step, which only records mtimes
        if self._changed:
            emit_batch(self._first_change_at, (("modified", p) for p in self._changed))
            self._changed = []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    # werkzeug also walks every sys.path entry outside the interpreter's prefix: here that would
    # be this checkout (the script's directory, an editable install), not the tree under test.
    sys.path[:] = [p for p in sys.path if p.startswith((sys.prefix, sys.base_prefix))]
    with _BenchStatLoop(args.tree, args.interval) as loop:
        loop.run()


if __name__ == "__main__":
    main()
