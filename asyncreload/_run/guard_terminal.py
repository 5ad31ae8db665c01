"""The guard's terminal: handing it to a process group, with the modes it had. Standard library
only: part of the guard program (see guard_program), which imports it as a top-level module.
"""

from __future__ import annotations

import os
import termios
from typing import Any

__all__ = ["hand_terminal"]


def hand_terminal(pgrp: int, modes: list[Any] | None) -> None:
    """Make ``pgrp`` the terminal's foreground group, with the terminal ``modes`` it had."""
    try:
        if modes is not None:
            # A command killed in raw mode (a debugger, a curses app) would leave the terminal
            # unusable; a shell restores it the same way after each job.
            termios.tcsetattr(0, termios.TCSADRAIN, modes)
        os.tcsetpgrp(0, pgrp)
    except (OSError, termios.error):
        pass  # no terminal any more, or asyncreload's group is gone
