"""What the log says of a run: its start, each restart and how long it took, each exit and what
follows, a working directory gone and back, a path muted for restarting the command in a loop."""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterable, Sequence

from .._exceptions import CommandError
from .._loopguard import muted_line
from .._watch import ChangeBatch, relative_to, summarize
from .process import StrPath, describe_returncode

__all__ = ["Report", "log"]

log = logging.getLogger("asyncreload.run")


class Report:
    """The log lines of one run of :class:`~.runner.ProcessRunner`."""

    def __init__(self) -> None:
        self.cwd = ""
        """The command's working directory: paths are shown relative to it."""
        self._cwd_gone = False

    def watching(self, paths: Sequence[StrPath], argv: Sequence[str]) -> None:
        where = ", ".join(os.fspath(p) for p in paths) or self.cwd
        log.info("watching %s; running %s", where, shlex.join(argv))

    def held(self, seconds: float) -> None:
        log.debug("held the start %.0f ms for more changes", seconds * 1000)

    def restarted(self, why: str, batch: ChangeBatch, stop: float, start: float) -> None:
        if self._cwd_gone:  # the start it waited for: that is the news
            self._cwd_gone = False
            log.info("%s is back: started the command again", self.cwd)
            return
        ms = 1000
        took = f"in {(stop + start) * ms:.0f} ms (stop {stop * ms:.0f} + start {start * ms:.0f})"
        if batch:
            log.info("restarted %s after %s", took, summarize(batch, self.cwd))
        else:
            log.info("restarted %s %s", took, "on request" if why == "request" else "after exit")

    def cwd_gone(self, failure: CommandError) -> None:
        if not self._cwd_gone:  # once: the look each second is quiet
            self._cwd_gone = True
            log.warning("%s; starting it once it is back", failure)

    def exited(self, returncode: int, failure: CommandError | None, delay: float | None) -> None:
        then = "restarting on the next change" if delay is None else (
            "restarting now" if delay == 0 else f"restarting in {delay:g} s")  # fmt: skip
        if failure:
            log.error("%s; %s", failure, then)
            return
        level = logging.INFO if returncode == 0 else logging.WARNING
        log.log(level, "command %s; %s", describe_returncode(returncode), then)

    def ended(self, returncode: int) -> None:
        log.debug("command %s", describe_returncode(returncode))

    def muted(self, paths: Iterable[str], watched: Sequence[StrPath]) -> None:
        cwd = self.cwd  # resolved at the start: os.getcwd() fails once the directory is gone
        roots = [os.path.join(cwd, os.fspath(p)) for p in watched] or [cwd]
        for path in paths:
            shown = relative_to(path, cwd)
            log.warning(muted_line(path, shown, roots, "--exclude", "restarts"))
