"""Not a watcher: run a server and write each line it prints prefixed with when it was read.

``python stamp_lines.py COMMAND...``: COMMAND's stdout and stderr (one pipe) go to this process's
stdout, each line as ``T LINE``, T being ``time.monotonic()`` as the line arrived. The harness
reads CLOCK_MONOTONIC too, so a server's log lines ("reloaded in 31 ms after 1 change: ...")
line up with its own save and first-response times, and the kept log shows where the time
between a save and the first new response went.

The harness stops the whole process group; this process ignores SIGTERM and SIGINT so that it
outlives the server and records its last lines, and ends when the pipe does (then with the
server's status). Stdlib only, and the server dies with it (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main(argv: list[str]) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    # The server gets the default handlers back: ignored signals would be inherited by exec.
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_reset_and_die_with_parent,  # noqa: PLW1509 (single-threaded)
    )
    assert proc.stdout is not None
    out = sys.stdout.buffer
    for line in proc.stdout:
        out.write(f"{time.monotonic():.4f} ".encode() + line)
        out.flush()
    return proc.wait()


def _reset_and_die_with_parent() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    _die_with_parent()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
