"""Runner: ``watchfiles.watch`` as an application would call it (events or force_polling)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import watchfiles
import watchfiles.main
from _emit import emit, emit_batch

_RustNotify = watchfiles.main.RustNotify  # type: ignore[attr-defined]


def _armed_rust_notify(*args: Any, **kwargs: Any) -> Any:
    # watch() builds its RustNotify lazily, on the first next(); the constructor returns once the
    # inotify watches are laid (or the poller's first scan is done). That moment is "armed".
    notify = _RustNotify(*args, **kwargs)
    emit("armed")
    return notify


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", required=True)
    parser.add_argument("--force-polling", action="store_true")
    parser.add_argument("--poll-delay-ms", type=int, default=300)
    args = parser.parse_args()
    watchfiles.main.RustNotify = _armed_rust_notify  # type: ignore[attr-defined,assignment]
    for changes in watchfiles.watch(
        args.tree, force_polling=args.force_polling, poll_delay_ms=args.poll_delay_ms
    ):
        t = time.monotonic()
        emit_batch(t, ((change.name, path) for change, path in changes))


if __name__ == "__main__":
    main()
