"""Measure one watcher on one tree: idle cost, event-loop stalls, detection latency, bursts.

Every wait is on an event from the runner with a deadline; the only timed pauses are the random
gaps between trials, which put each edit at a random phase of a poller's cycle (a poller's
latency depends on where in its sweep the edit lands, and the percentiles should average over
that). The order matters: idle first, while the tree is quiet; the burst last, since it leaves
the tree changed.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ._cpu import cpu_seconds_between, sample
from ._peers import Peer
from ._runner import Event, RunnerDied, RunnerProcess, running
from ._stats import MISSED
from ._trees import Tree, write_burst

__all__ = ["Settings", "measure"]

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """How much to measure; ``--quick`` and the default run differ only here."""

    trials: int = 20
    """Edits of existing files per (watcher, tree). A p95 of 10 moved by +-50 ms from run to run,
    too much to compare two pollers' CPU "at equal p95"."""
    min_trials: int = 4
    budget: float = 25.0
    """Seconds of edit trials per (watcher, tree); past it, no new trial beyond ``min_trials``."""
    new_trials: int = 2
    reedit_trials: int = 5
    """Saves of one file again and again, as in an edit-reload loop."""
    idle_seconds: float = 4.5
    idle_windows: int = 3
    deadline: float = 10.0
    """A change not reported within this many seconds is "missed"."""
    start_deadline: float = 240.0
    spacing: tuple[float, float] = (0.2, 0.6)
    burst_files: int = 2000
    burst_quiet: tuple[float, float] = (2.0, 2.0)
    """A burst is over after this long without a batch: (at least seconds, times the slowest
    edit's latency). A burst may straddle a poller's sweeps; this waits out its next cycle."""
    new_deadline: tuple[float, float] = (1.0, 2.0)
    """A new file not seen within (seconds plus times the slowest edit's latency) is "never":
    a watcher that would ever see it sees it within its next full cycle."""
    stall_sweeps: int = 3
    stall_seconds: float = 2.0


def _system_busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)


def _idle(runner: RunnerProcess, tree: Tree, settings: Settings) -> dict[str, Any]:
    """CPU % of one core in consecutive windows; also the FUSE daemon's and everyone else's.

    "background" is what the rest of the machine used meanwhile (other tests, a build): the
    reader's measure of how disturbed the run was.
    """
    window = settings.idle_seconds / settings.idle_windows
    pids = {"watcher": runner.pid, "daemon": tree.daemon_pid, "harness": os.getpid()}
    cpu, daemon_cpu, background = [], [], []
    for _ in range(settings.idle_windows):
        before = {name: sample(pid) for name, pid in pids.items()}
        s0, t0 = _system_busy_seconds(), time.monotonic()
        runner.drain(window)
        wall, others = time.monotonic() - t0, _system_busy_seconds() - s0
        used = {name: cpu_seconds_between(before[name], sample(pid)) for name, pid in pids.items()}
        cpu.append(100 * used["watcher"] / wall)
        daemon_cpu.append(100 * used["daemon"] / wall)
        background.append(max(0.0, 100 * (others - sum(used.values())) / wall))
    try:
        rss = psutil.Process(runner.pid).memory_info().rss
    except psutil.Error:
        rss = 0
    result: dict[str, Any] = {"cpu": cpu, "background": background, "rss_mb": rss / 2**20}
    if tree.daemon_pid is not None:
        result["daemon_cpu"] = daemon_cpu
    return result


def _count(event_name: str, n: int) -> Callable[[Event], bool]:
    """A matcher that is true at the ``n``-th event of that name."""
    seen = 0

    def match(event: Event) -> bool:
        nonlocal seen
        if event["ev"] == event_name:
            seen += 1
        return seen >= n

    return match


def _stall(runner: RunnerProcess, polls: bool, settings: Settings) -> dict[str, Any] | None:
    """Longest event-loop gap while the watcher sweeps ``stall_sweeps`` times (or idles)."""
    runner.signal(signal.SIGUSR1)
    t0 = time.monotonic()
    if polls:
        runner.wait_for(_count("sweep", settings.stall_sweeps), t0 + 4 * settings.deadline)
    else:
        runner.drain(settings.stall_seconds)
    runner.signal(signal.SIGUSR2)
    event = runner.wait_for(lambda e: e["ev"] == "stall", time.monotonic() + settings.deadline)
    if event is None:
        return None
    return {"max_gap": event["max_gap"], "ticks": event["ticks"], "seconds": event["t"] - t0}


def _reports(path: str) -> Callable[[Event], bool]:
    return lambda e: e["ev"] == "batch" and any(p[1] == path for p in e["paths"])


def _append(path: str) -> float:
    """Edit a file as an editor's save would; return the monotonic time just before."""
    t0 = time.monotonic()
    with open(path, "a") as f:
        f.write("# edited\n")
    return t0


def _ready_for_trial(runner: RunnerProcess, rng: random.Random, settings: Settings) -> bool:
    if not runner.wait_armed(time.monotonic() + settings.start_deadline):
        return False
    runner.drain(rng.uniform(*settings.spacing))
    return True


def _modify_trials(
    runner: RunnerProcess, tree: Tree, rng: random.Random, settings: Settings
) -> list[float]:
    """Latency (seconds, or MISSED) of edits to random existing files, spaced apart."""
    samples: list[float] = []
    start = time.monotonic()
    for rel in rng.sample(tree.files, min(settings.trials, len(tree.files))):
        if len(samples) >= settings.min_trials and time.monotonic() - start > settings.budget:
            break
        if not _ready_for_trial(runner, rng, settings):
            break
        samples.append(_timed_edit(runner, tree, rel, settings))
        if _blind(samples):
            break
    return samples


def _timed_edit(runner: RunnerProcess, tree: Tree, rel: str, settings: Settings) -> float:
    """Save ``rel`` once; the latency until a batch names it (seconds, or MISSED)."""
    t0 = _append(tree.write_path(rel))
    event = runner.wait_for(_reports(tree.watch_path(rel)), t0 + settings.deadline)
    return MISSED if event is None else event["t"] - t0


def _reedit_trials(
    runner: RunnerProcess, tree: Tree, rng: random.Random, settings: Settings
) -> list[float]:
    """Latency of saving the same file again and again, spaced apart: the edit-reload loop.

    Separate from the random edits because a watcher may treat a file it just saw change
    differently (asyncreload checks its recently changed files between sweeps).
    """
    samples: list[float] = []
    rel = rng.choice(tree.files)
    for _ in range(settings.reedit_trials):
        if not _ready_for_trial(runner, rng, settings):
            break
        samples.append(_timed_edit(runner, tree, rel, settings))
        if _blind(samples):
            break
    return samples


def _blind(samples: list[float]) -> bool:
    """Whether a watcher is blind to this tree: it saw nothing yet, or missed twice in a row.

    More trials would only cost deadlines.
    """
    if not samples or samples[-1] != MISSED:
        return False
    return all(s == MISSED for s in samples) or samples[-2:] == [MISSED, MISSED]


def _new_and_deleted(
    runner: RunnerProcess,
    tree: Tree,
    rng: random.Random,
    settings: Settings,
    deadline: float,
    cleanup: list[str],
) -> tuple[list[float], list[float]]:
    """Latency of creating a new file, then of deleting it again (only if its creation was seen).

    One miss ends it: a watcher that listed its files at start never learns of a new one.
    """
    created: list[float] = []
    deleted: list[float] = []
    for k in range(settings.new_trials):
        rel = os.path.join(rng.choice(tree.dirs), f"bench_new_{os.getpid()}_{k}.py")
        if not _ready_for_trial(runner, rng, settings):
            break
        cleanup.append(rel)
        t0 = time.monotonic()
        with open(tree.write_path(rel), "w") as f:
            f.write("VALUE = 1\n")
        event = runner.wait_for(_reports(tree.watch_path(rel)), t0 + deadline)
        created.append(MISSED if event is None else event["t"] - t0)
        if event is not None and _ready_for_trial(runner, rng, settings):
            t0 = time.monotonic()
            os.remove(tree.write_path(rel))
            event = runner.wait_for(_reports(tree.watch_path(rel)), t0 + deadline)
            deleted.append(MISSED if event is None else event["t"] - t0)
        if created[-1] == MISSED:
            break
    return created, deleted


def _burst(
    runner: RunnerProcess,
    tree: Tree,
    rng: random.Random,
    settings: Settings,
    quiet: float,
    cleanup: list[str],
) -> dict[str, Any]:
    """Write ``burst_files`` at once; count the batches (restarts) until ``quiet`` seconds pass
    without one after the first."""
    if not _ready_for_trial(runner, rng, settings):
        return {"error": "not armed"}
    t0 = time.monotonic()
    burst = write_burst(tree, f"{os.getpid()}", rng, settings.burst_files)
    t1 = time.monotonic()
    cleanup.extend(burst.new_dirs)
    modified = {tree.watch_path(rel) for rel in burst.modified}
    created = {tree.watch_path(rel) for rel in burst.created}
    batches: list[Event] = []
    hard_deadline = t0 + 3 * settings.deadline
    while True:
        # The first batch gets the same deadline as any edit; after it, the burst is over once
        # the watcher has been quiet for ``quiet`` seconds.
        until = t1 + settings.deadline if not batches else time.monotonic() + quiet
        event = runner.wait_for(lambda e: e["ev"] == "batch", min(until, hard_deadline))
        if event is None:
            break
        batches.append(event)
    reported = {p[1] for e in batches for p in e["paths"]}
    result: dict[str, Any] = {
        "files": len(modified) + len(created),
        "write_s": t1 - t0,
        "batches": len(batches),
        "seen": len(reported & (modified | created)),
        "seen_modified": len(reported & modified),
        "seen_created": len(reported & created),
        "batch_sizes": [len(e["paths"]) for e in batches],
        "batch_at_s": [e["t"] - t0 for e in batches],
        "quiet_s": quiet,
    }
    return result


def _runner_env() -> dict[str, str]:
    # Peers run at their defaults: a WATCHFILES_* variable in the caller's shell would change
    # what is measured. ASYNCRELOAD_* passes through on purpose (to measure a tuning).
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHFILES_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _sweeps(history: list[Event]) -> list[float]:
    """Durations of the full sweeps after the first "armed" (the first sweep fills caches)."""
    armed = next((i for i, e in enumerate(history) if e["ev"] == "armed"), len(history))
    return [e["seconds"] for e in history[armed + 1 :] if e["ev"] == "sweep"]


def _run_phases(
    runner: RunnerProcess,
    peer: Peer,
    tree: Tree,
    rng: random.Random,
    settings: Settings,
    result: dict[str, Any],
    cleanup: list[str],
) -> None:
    """Fill ``result`` phase by phase (so a runner that dies midway keeps what it had)."""
    result["idle"] = _idle(runner, tree, settings)
    polls = any(e["ev"] == "sweep" for e in runner.history)
    if peer.stall:
        result["stall"] = _stall(runner, polls, settings)
    result["modify"] = modify = _modify_trials(runner, tree, rng, settings)
    result["sweeps"] = _sweeps(runner.history)
    finite = [s for s in modify if math.isfinite(s)]
    if not finite:
        return  # blind to this tree: new files and bursts would only cost deadlines
    result["reedit"] = _reedit_trials(runner, tree, rng, settings)
    slowest = max(finite)
    plus, times = settings.new_deadline
    result["new_deadline_s"] = deadline = min(settings.deadline, plus + times * slowest)
    result["new"], result["deleted"] = _new_and_deleted(
        runner, tree, rng, settings, deadline, cleanup
    )
    result["sweeps"] = _sweeps(runner.history)  # the burst's sweeps are not idle sweeps
    at_least, times = settings.burst_quiet
    quiet = min(settings.deadline, max(at_least, times * slowest))
    result["burst"] = _burst(runner, tree, rng, settings, quiet, cleanup)


def _remove(tree: Tree, rels: list[str]) -> None:
    for rel in rels:
        path = tree.write_path(rel)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)


class _NotStarted(RuntimeError):
    """The runner died before it was armed."""


def measure(
    peer: Peer, tree: Tree, rng: random.Random, settings: Settings, logdir: Path
) -> dict[str, Any]:
    """All figures for one watcher on one tree; ``error`` says why some are missing.

    A runner that dies before it is armed gets one more try (the first error is kept under
    ``retried_after``): one flaky start should not blank a whole row.
    """
    try:
        return _measure_once(peer, tree, rng, settings, logdir)
    except _NotStarted as exc:
        result = _measure_once(peer, tree, rng, settings, logdir, first_try=False)
        result["retried_after"] = str(exc)
        return result


def _measure_once(
    peer: Peer,
    tree: Tree,
    rng: random.Random,
    settings: Settings,
    logdir: Path,
    *,
    first_try: bool = True,
) -> dict[str, Any]:
    result: dict[str, Any] = {"peer": peer.name, "tree": tree.label}
    stderr_path = logdir / f"{peer.name}-{tree.kind}-{tree.size}.stderr"
    cleanup: list[str] = []
    t_spawn = time.monotonic()
    try:
        with running(
            peer.command(tree.watch_root), env=_runner_env(), cwd=REPO, stderr_path=stderr_path
        ) as runner:
            runner.rearms = peer.rearms
            armed = runner.wait_for(lambda e: e["ev"] == "armed", t_spawn + settings.start_deadline)
            if armed is None:
                result["error"] = f"not armed within {settings.start_deadline:.0f} s"
                return result
            result["startup_s"] = armed["t"] - t_spawn
            source = next((e for e in runner.history if e["ev"] == "source"), None)
            if source is not None:
                result["source"] = source["digest"]
            _run_phases(runner, peer, tree, rng, settings, result, cleanup)
    except RunnerDied as exc:
        if first_try and "startup_s" not in result:
            raise _NotStarted(str(exc)) from exc
        result["error"] = str(exc)
    finally:
        # Only now, with the watcher gone: removing the burst's files would be another burst.
        _remove(tree, cleanup)
    return result
