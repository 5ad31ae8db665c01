"""What asyncreload and its guard say to each other: asyncreload asks (each request has an
``op``), the guard tells (each message has an ``event``), one JSON object per line each way
(framed by ``asyncreload._wire``). Standard library only: the guard imports it as a top-level
module.

::

    asyncreload -> guard   {"op": "spawn", "argv": [...], "env": {...}, "cwd": "..."|null,
                            "foreground": true}
                           {"op": "stop", "signal": 15, "grace": 5.0, "signalled": false}
                           {"op": "kill"}   (during a stop: don't wait out the grace period)
                           {"op": "resume", "foreground": true}   (after "suspended")
    guard -> asyncreload   {"event": "ready", "pid": N}
                           {"event": "started", "pid": N}
                           {"event": "error", "errno": E, "message": "...", "step": S}
                           (S: "cwd" when chdir failed, "exec" when exec did)
                           {"event": "exited", "pid": N, "returncode": RC}
                           {"event": "interrupt", "signal": 2}   (or 3; 1: SIGHUP)
                           {"event": "stopped", "killed": false, "victims": [], "stuck": []}
                           (victims: [pid, name] of each process SIGKILLed)
                           {"event": "suspended", "pid": N, "signal": 20}

Each request but ``kill`` and ``resume`` gets one answer: ``started`` or ``error`` for ``spawn``,
``stopped`` for ``stop``. The other events come when they happen. ``returncode`` is as in
:mod:`subprocess`: negative for a death by signal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

# asyncreload -> guard: the "op" of a request.
SPAWN: Final = "spawn"
STOP: Final = "stop"
KILL: Final = "kill"
RESUME: Final = "resume"

# guard -> asyncreload: the "event" of a message.
READY: Final = "ready"
STARTED: Final = "started"
ERROR: Final = "error"
EXITED: Final = "exited"
INTERRUPT: Final = "interrupt"
STOPPED: Final = "stopped"
SUSPENDED: Final = "suspended"

# The "step" of an "error" answer to "spawn".
AT_CWD: Final = "cwd"
AT_EXEC: Final = "exec"


def spawn(
    argv: Sequence[str], env: Mapping[str, str], cwd: str | None, *, foreground: bool
) -> dict[str, Any]:
    """Start ``argv`` in a process group of its own (with the terminal, if ``foreground``)."""
    return {"op": SPAWN, "argv": list(argv), "env": dict(env), "cwd": cwd, "foreground": foreground}


def stop(signal: int, grace: float, *, signalled: bool) -> dict[str, Any]:
    """Stop the command and all it started: ``signal``, ``grace`` seconds, then SIGKILL. With
    ``signalled``, the command's group already had the signal (from the terminal)."""
    return {"op": STOP, "signal": signal, "grace": grace, "signalled": signalled}


def kill() -> dict[str, Any]:
    """During a stop: SIGKILL now, without waiting out the grace period."""
    return {"op": KILL}


def resume(*, foreground: bool) -> dict[str, Any]:
    """Continue the suspended command (with the terminal, if ``foreground``)."""
    return {"op": RESUME, "foreground": foreground}
