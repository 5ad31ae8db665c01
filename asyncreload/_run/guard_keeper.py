"""The keeper: the process asyncreload starts, which forks the guard and only waits for it; when
the guard is gone, it stops whatever the guard held. Standard library only: part of the guard
program (see guard_program), which imports it as a top-level module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import termios
from typing import Any

if __package__:  # imported as a part of asyncreload (by the tests, by mypy)
    from .. import _subreaper
    from .guard_terminal import hand_terminal
else:  # in the guard, a top-level module: guard_program put its directories on sys.path
    import _subreaper  # type: ignore[import-not-found, no-redef]
    from guard_terminal import hand_terminal  # type: ignore[import-not-found, no-redef]

__all__ = ["keep"]


def keep(guard: int, config: dict[str, Any]) -> int:
    """The keeper, once it forked the guard: wait for it; when it is gone, stop what it left.

    That is nothing when the guard ended as it should. When it was killed, all it held (the
    command, and whatever was re-parented to it) is re-parented here, to the next subreaper up.
    """
    terminal_pgrp: int | None = config.get("terminal_pgrp")
    modes = None
    if terminal_pgrp is not None:
        with contextlib.suppress(OSError, termios.error):
            modes = termios.tcgetattr(0)
    os.waitpid(guard, 0)
    grace = float(config.get("grace", 5.0))
    _subreaper.end_descendants(grace, int(config.get("signal", signal.SIGTERM)))
    if terminal_pgrp is not None:
        # The terminal went to a command we just ended: give it back, or asyncreload is left
        # in the background of its own terminal. Not if somebody else holds it (after ``bg``).
        try:
            holder = os.tcgetpgrp(0)
            os.killpg(holder, 0)
        except ProcessLookupError:
            hand_terminal(terminal_pgrp, modes)
        except OSError:
            pass  # no terminal any more
    return 0
