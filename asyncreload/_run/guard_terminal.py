"""The guard's terminal: handing it to a process group, with the modes it had. Standard library
only: part of the guard program (see guard_program), which imports it as a top-level module.
"""

from __future__ import annotations

import os
import termios
from typing import Any

__all__ = ["Terminal", "hand_terminal"]


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


class Terminal:
    """The terminal as the guard lends it to the command and takes it back, modes and all."""

    def __init__(self, pgrp: int | None) -> None:
        self.pgrp = pgrp
        """The process group to give the terminal back to when a command ends (asyncreload's
        own), or None when asyncreload does not hold the terminal."""
        self.modes: list[Any] | None = None
        self.child_modes: list[Any] | None = None
        self.holder: int | None = None
        """The command's group while it holds the terminal (we gave it and have not taken it
        back): only then is the terminal ours to give back. After ``bg`` it is the shell's."""

    @property
    def ours(self) -> bool:
        """asyncreload holds the terminal: the command may have it."""
        return self.pgrp is not None

    def save_modes(self) -> None:
        """Keep asyncreload's terminal modes, to restore when a command ends."""
        if self.pgrp is not None:
            try:
                self.modes = termios.tcgetattr(0)
            except (OSError, termios.error):
                self.modes = None

    def lend(self, pgid: int) -> None:
        """The command's group ``pgid`` took the terminal (it does so itself, before exec)."""
        self.holder = pgid

    def take_back(self) -> None:
        """The command was stopped: keep its terminal modes, for :meth:`lend_again`, and give
        the terminal back."""
        if self.holder is not None:
            try:
                self.child_modes = termios.tcgetattr(0)
            except (OSError, termios.error):
                self.child_modes = None
        self.give_back()

    def lend_again(self, pgid: int) -> None:
        """Give the stopped command's group the terminal again, with its modes."""
        try:
            if self.child_modes is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, self.child_modes)
            os.tcsetpgrp(0, pgid)
            self.holder = pgid
        except (OSError, termios.error):
            pass  # no terminal any more: continue it anyway

    def give_back(self) -> None:
        if self.pgrp is None or self.holder is None:
            return
        self.holder = None
        hand_terminal(self.pgrp, self.modes)
