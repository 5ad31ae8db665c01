"""A process to restart: print one line saying which version it runs, then wait to be stopped.

The line is JSON in the harness's protocol (``started``): ``t`` is this process's
``time.monotonic()`` once the version module is imported, so edit-to-restarted is measured up to
the moment the new code runs. ``restart`` is asyncreload's restart counter (None elsewhere): it
also counts restarts whose process was stopped before it could print.
"""

from __future__ import annotations

import json
import os
import sys
import time

from bench_version import VERSION  # type: ignore[import-not-found]


def main() -> None:
    line = {
        "ev": "started",
        "t": time.monotonic(),
        "version": VERSION,
        "pid": os.getpid(),
        "restart": os.environ.get("ASYNCRELOAD_RESTART"),
    }
    print(json.dumps(line), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:  # watchfiles stops its command with SIGINT
        sys.exit(130)


if __name__ == "__main__":
    main()
