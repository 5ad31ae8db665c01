"""The watchers under test: one entry per configuration, each run by a small script in runners/."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PEERS", "Peer", "select"]

RUNNERS = Path(__file__).parent / "runners"


@dataclass(frozen=True)
class Peer:
    """One watcher configuration."""

    name: str
    """Short name, used by ``--peers``."""
    label: str
    """How the report names it."""
    script: str
    args: tuple[str, ...] = ()
    ours: bool = False
    """asyncreload itself: its rows get ratios to the best *other* watcher."""
    rearms: bool = False
    """Each batch disarms it until it reports "armed" again (uvicorn's StatReload re-reads every
    mtime after a restart before it can notice the next change)."""
    stall: bool = False
    """It runs an event loop whose stalls the runner can measure."""
    poll_delay: float | None = None
    """Seconds between a poller's sweeps, for those whose sweeps can't be timed from Python
    (watchfiles' Rust poller): the report then estimates the sweep's CPU from the idle CPU."""
    kinds: tuple[str, ...] = ("local", "fuse")
    """The kinds of tree it is measured on."""

    def command(self, tree: str) -> list[str]:
        return [sys.executable, str(RUNNERS / self.script), "--tree", tree, *self.args]


PEERS: tuple[Peer, ...] = (
    Peer("asyncreload", "asyncreload (auto)", "run_asyncreload.py", ours=True, stall=True),
    Peer(
        "asyncreload-poll",
        "asyncreload force_polling",
        "run_asyncreload.py",
        ("--force-polling",),
        ours=True,
        stall=True,
    ),
    Peer(
        "asyncreload-poll400",
        "asyncreload force_polling 0.4 s",
        "run_asyncreload.py",
        ("--force-polling", "--poll-interval", "0.4"),
        ours=True,
    ),
    Peer(
        "asyncreload-cpu25",
        "asyncreload (auto) poll_cpu 25 %",
        "run_asyncreload.py",
        ("--poll-cpu", "25"),
        ours=True,
        kinds=("fuse",),
    ),
    Peer("watchfiles", "watchfiles (events)", "run_watchfiles.py"),
    Peer(
        "watchfiles-poll",
        "watchfiles force_polling 300 ms",
        "run_watchfiles.py",
        ("--force-polling",),
        poll_delay=0.3,
    ),
    Peer(
        "watchfiles-poll50",
        "watchfiles force_polling 50 ms",
        "run_watchfiles.py",
        ("--force-polling", "--poll-delay-ms", "50"),
        poll_delay=0.05,
    ),
    Peer(
        "uvicorn-stat",
        "uvicorn StatReload (0.25 s)",
        "run_uvicorn.py",
        ("--reloader", "stat"),
        rearms=True,
    ),
    Peer(
        "uvicorn-watchfiles",
        "uvicorn WatchFilesReload",
        "run_uvicorn.py",
        ("--reloader", "watchfiles"),
    ),
    Peer("werkzeug", "werkzeug stat (1 s)", "run_werkzeug.py", ("--interval", "1")),
    Peer("hupper", "hupper polling (1 s)", "run_hupper.py", ("--interval", "1")),
)


def select(names: list[str] | None) -> list[Peer]:
    """The peers named (all if None), in the registry's order; unknown names are an error."""
    if not names:
        return list(PEERS)
    known = {p.name: p for p in PEERS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown peer(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [p for p in PEERS if p.name in names]
