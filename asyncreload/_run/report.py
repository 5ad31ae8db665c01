"""What the log says of a run: each restart and how long it took, each exit and what follows."""

from __future__ import annotations

import logging

from .._exceptions import CommandError
from .._watch import ChangeBatch, summarize
from .process import describe_returncode

__all__ = ["Report"]

log = logging.getLogger("asyncreload.run")


class Report:
    """The log lines of one run of :class:`~.runner.ProcessRunner`."""

    def __init__(self) -> None:
        self.cwd = ""
        """The command's working directory: paths are shown relative to it."""

    def restarted(self, why: str, batch: ChangeBatch, stop: float, start: float) -> None:
        ms = 1000
        took = f"in {(stop + start) * ms:.0f} ms (stop {stop * ms:.0f} + start {start * ms:.0f})"
        if batch:
            log.info("restarted %s after %s", took, summarize(batch, self.cwd))
        else:
            log.info("restarted %s %s", took, "on request" if why == "request" else "after exit")

    def exited(self, returncode: int, failure: CommandError | None, delay: float | None) -> None:
        then = "restarting on the next change" if delay is None else (
            "restarting now" if delay == 0 else f"restarting in {delay:g} s")  # fmt: skip
        if failure:
            log.error("%s; %s", failure, then)
            return
        level = logging.INFO if returncode == 0 else logging.WARNING
        log.log(level, "command %s; %s", describe_returncode(returncode), then)
