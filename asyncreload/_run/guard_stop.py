"""The guard's stop of what the command started: the stop signal to its group and to every
descendant outside it, then, once the grace period is over, SIGKILL to every descendant. Standard
library only: part of the guard program (see guard_program), which imports it as a top-level
module.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field

if __package__:  # imported as a part of asyncreload (by the tests, by mypy)
    from .. import _subreaper
else:  # in the guard, a top-level module: guard_program put its directories on sys.path
    import _subreaper  # type: ignore[import-not-found, no-redef]

__all__ = ["Stop", "kill_all", "signal_all"]


@dataclass
class Stop:
    """A stop under way."""

    deadline: float
    killed: bool = False
    victims: list[tuple[int, str]] = field(default_factory=list)
    """What was still alive when the grace period ran out: ``(pid, name)``."""


def signal_all(guard: int, group: int | None, sig: int, *, signalled: bool) -> None:
    """``sig`` to the command's ``group`` (unless the terminal ``signalled`` it already) and to
    every descendant of the ``guard`` outside it."""
    if group is not None and not signalled:
        _subreaper.send_signal(group, sig, group=True)
    strays = [p for p, g in _subreaper.descendants(guard).items() if g != group]
    for pid in strays:
        _subreaper.send_signal(pid, sig)
    if sig not in (signal.SIGKILL, signal.SIGCONT):
        # A stopped process only acts on the signal once it runs again.
        if group is not None:
            _subreaper.send_signal(group, signal.SIGCONT, group=True)
        for pid in strays:
            _subreaper.send_signal(pid, signal.SIGCONT)


def kill_all(guard: int, group: int | None) -> list[tuple[int, str]]:
    """SIGKILL every descendant; sweep again in case one forked while we walked. Returns
    what was alive before, ``(pid, name)``, so the warning can say whom it killed."""
    victims = [(pid, _subreaper.name_of(pid)) for pid in sorted(_subreaper.descendants(guard))]
    if group is not None:
        _subreaper.send_signal(group, signal.SIGKILL, group=True)
    for _ in range(10):
        found = _subreaper.descendants(guard)
        if not found:
            break
        for pid in found:
            _subreaper.send_signal(pid, signal.SIGKILL)
        time.sleep(0.001)
    return victims
