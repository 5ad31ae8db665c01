"""What the restart loop does about whatever woke it: the rules, in their order, and nothing
else. Pure (no processes, no clock), so that each order of events, those that happen in the same
instant included, is tested in microseconds (tests/test_restarts.py); :mod:`.runner` does what
it says.

The order, first match wins:

1. the terminal interrupted the command (Ctrl-C, Ctrl-\\, a hang-up): finish;
2. (a Ctrl-Z is dealt with here: it never ends the wait by itself, and does not stop the rules
   that follow;)
3. the command exited because of the terminal: finish (it was signalled already);
4. it exited, with ``on_exit="exit"``: its exit ends the run;
5. a stop was asked for: finish;
6. a change, a restart asked for, or the end of a delay after an exit: restart;
7. else (the command exited, to be restarted on the next change): wait again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .._watch import ChangeBatch

__all__ = ["Step", "Then", "Wake", "step"]


@dataclass
class Wake:
    """What ended a wait; more than one thing can happen in the same instant."""

    batch: ChangeBatch = ()
    exited: bool = False
    interrupted: bool = False
    suspended: bool = False
    timed_out: bool = False


class Then(enum.Enum):
    FINISH = "finish"
    """Stop the command (and what it left) and end the run with its returncode."""
    EXIT = "exit"
    """The command's exit ends the run (``on_exit="exit"``)."""
    RESTART = "restart"
    WAIT = "wait"
    """Nothing to act on yet: wait again."""


@dataclass(frozen=True)
class Step:
    then: Then
    suspend: bool = False
    """First, before anything else: the command holding the terminal was stopped (Ctrl-Z), so
    stop our own job too, until ``fg``."""
    exited: bool = False
    """The command exited (and this was not the end): say so, and count the backoff."""
    had_child: bool = False
    """:attr:`Then.FINISH`: a command was running, so the run ends with its returncode."""
    signalled: bool = False
    """:attr:`Then.FINISH`: the terminal signalled the command already; don't again."""
    why: str = ""
    """:attr:`Then.RESTART`: ``change``, ``request`` or ``exit`` (for the log)."""


def step(
    wake: Wake,
    *,
    running: bool,
    stop_requested: bool,
    restart_requested: bool,
    exit_ends_run: bool,
    by_terminal: bool = False,
    hangup: bool = False,
    changes_pending: bool | None = None,
) -> Step:
    """What to do about ``wake``.

    ``running``: a command was running during the wait. ``by_terminal``: it exited because the
    terminal interrupted it (only read when ``wake.exited``). ``hangup``: the interruption was
    the terminal hanging up (a server run with nohup in mind may not have stopped: it still gets
    the stop signal). ``changes_pending``: whether the restart has changes to answer (default:
    ``wake.batch``; more when changes came while the working directory was gone).

    >>> s = step(Wake(batch=("x",), exited=True), running=True, stop_requested=False,
    ...          restart_requested=False, exit_ends_run=False)
    >>> s.then, s.exited, s.why
    (<Then.RESTART: 'restart'>, True, 'change')
    """
    if wake.interrupted:
        return Step(Then.FINISH, had_child=True, signalled=not hangup)
    suspend = wake.suspended
    if wake.exited:
        running = False
        if by_terminal:
            return Step(Then.FINISH, suspend, had_child=True, signalled=True)
        if exit_ends_run:
            return Step(Then.EXIT, suspend)
    if stop_requested:
        return Step(Then.FINISH, suspend, exited=wake.exited, had_child=running)
    pending = bool(wake.batch) if changes_pending is None else changes_pending
    if wake.batch or restart_requested or wake.timed_out:
        why = "change" if pending else "request" if restart_requested else "exit"
        return Step(Then.RESTART, suspend, exited=wake.exited, why=why)
    return Step(Then.WAIT, suspend, exited=wake.exited)
