"""Edit to a restarted process: ``bench_script.py`` under each reloader that restarts a command.

The script imports ``bench_version.py`` and prints one ``started`` line with the version it got
(see ``apps/restart_script.py``). For each reloader, in a fresh project:

1. start it and wait for the script's first line;
2. **edits**: save a new version of ``bench_version.py`` (size-changing, atomic rename), wait
   for a line with that version; then a random pause before the next;
3. **same-size edit**: save a version, wait for it, then save another of the same size with an
   mtime in the same second (as a second save within that second leaves it): does the restarted
   process run the new code, or the old code from a stale ``__pycache__`` entry?
4. **burst**: a branch switch: ``bench_version.py`` first, then 999 existing modules rewritten
   and 1,000 new ones in new directories; count the restarts until the reloader has been quiet
   for a while, and check that the last one runs the new version;
5. stop the reloader's process group, and anything it left behind.

Every wait is on a line from the script, with a deadline; the only timed pauses space the edits.
"""

from __future__ import annotations

import math
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._reloaders import (
    Reloader,
    ReloadSettings,
    Versions,
    reloader_env,
    same_second_mtime_ns,
    write_module,
    write_project,
)
from ._runner import Event, RunnerDied, RunnerProcess, running
from ._stats import MISSED
from ._trees import Tree, write_burst

__all__ = ["measure_floor", "measure_restart"]


def _started(version: str | None = None) -> Callable[[Event], bool]:
    """A matcher for the script's line (with that version, if given)."""
    return lambda e: e["ev"] == "started" and (version is None or e["version"] == version)


def _edit_trials(
    proc: RunnerProcess,
    reloader: Reloader,
    project: Path,
    versions: Versions,
    rng: random.Random,
    settings: ReloadSettings,
) -> list[float]:
    """Latency (seconds, or MISSED) from each save to the new process's line."""
    samples: list[float] = []
    proc.drain(reloader.settle)
    for _ in range(settings.trials):
        proc.drain(rng.uniform(*settings.spacing))
        version = versions.next()
        t0 = write_module(project / reloader.edits, reloader.text(version))
        event = proc.wait_for(_started(version), t0 + settings.deadline)
        samples.append(MISSED if event is None else event["t"] - t0)
        if samples[-2:] == [MISSED, MISSED] or samples == [MISSED]:
            break  # it doesn't restart on this edit; more trials would only cost deadlines
    return samples


def _early_in_a_second() -> None:
    """Pause (at most 0.1 s) so that the next save is not in the last 10 % of a second."""
    fraction = time.time() % 1
    if fraction > 0.9:
        time.sleep(1.0 - fraction + 0.01)


def same_size_edit(
    wait_for_version: Callable[[str, float], Event | None],
    wait_for_other_process: Callable[[Event, float], Event | None],
    path: Path,
    text: Callable[[str], str],
    versions: Versions,
    deadline: float,
) -> dict[str, Any]:
    """Save version A, wait for it to run; then save B, of the same size, with an mtime in A's
    second. The outcome is what the next process (a new pid) runs: ``new`` (B), ``stale`` (A,
    from the bytecode cached when A was imported), or ``missed`` (no new process in time).

    Shared by the restart and serve measurements: ``wait_for_version(version, deadline)`` waits
    for A; ``wait_for_other_process(a_event, deadline)`` for any process other than A's.
    Events have ``t``, ``version`` and ``pid``.
    """
    a = versions.next()
    _early_in_a_second()
    t0 = write_module(path, text(a))
    first = wait_for_version(a, t0 + deadline)
    if first is None:
        return {"outcome": "untested", "why": f"version A not running within {deadline:.0f} s"}
    b = Versions.same_size(a)
    try:
        mtime_ns = same_second_mtime_ns(path)
    except ValueError as exc:  # A's save landed in the last millisecond of its second
        return {"outcome": "untested", "why": str(exc)}
    t1 = write_module(path, text(b), mtime_ns=mtime_ns)
    event = wait_for_other_process(first, t1 + deadline)
    if event is None:
        return {"outcome": "missed", "a": a, "b": b}
    outcome = "new" if event["version"] == b else "stale" if event["version"] == a else "other"
    return {"outcome": outcome, "a": a, "b": b, "got": event["version"], "s": event["t"] - t1}


def _burst(
    proc: RunnerProcess,
    reloader: Reloader,
    project: Path,
    tree: Tree,
    versions: Versions,
    rng: random.Random,
    settings: ReloadSettings,
    quiet: float,
) -> dict[str, Any]:
    """The version module, then the rest of ``burst_files`` in the tree; count the restarts."""
    proc.drain(rng.uniform(*settings.spacing))
    before = [e for e in proc.history if e["ev"] == "started"]
    version = versions.next()
    t0 = write_module(project / reloader.edits, reloader.text(version))
    burst = write_burst(tree, "b", rng, settings.burst_files - 1)
    t1 = time.monotonic()
    starts: list[Event] = []
    hard_deadline = t0 + 3 * settings.deadline
    while True:
        until = t1 + settings.deadline if not starts else time.monotonic() + quiet
        event = proc.wait_for(_started(), min(until, hard_deadline))
        if event is None:
            break
        starts.append(event)
    result: dict[str, Any] = {
        "files": 1 + len(burst.modified) + len(burst.created),
        "write_s": t1 - t0,
        "restarts": len(starts),
        "quiet_s": quiet,
        "final": None if not starts else starts[-1]["version"] == version,
        "start_at_s": [e["t"] - t0 for e in starts],
    }
    # asyncreload numbers its starts: a gap is a start killed before it could print.
    numbered = [e["restart"] for e in [*before[-1:], *starts] if e.get("restart") is not None]
    if starts and len(numbered) == len(starts) + 1:
        result["restarts"] = max(len(starts), int(numbered[-1]) - int(numbered[0]))
    return result


def _phases(
    proc: RunnerProcess,
    reloader: Reloader,
    project: Path,
    tree: Tree | None,
    rng: random.Random,
    settings: ReloadSettings,
    result: dict[str, Any],
) -> None:
    """Fill ``result`` phase by phase (a reloader that dies midway keeps what it had)."""
    versions = Versions()
    result["edits"] = edits = _edit_trials(proc, reloader, project, versions, rng, settings)
    finite = [s for s in edits if math.isfinite(s)]
    # Restarts beyond one per edit, e.g. a second one for the temporary file of the save.
    starts = sum(1 for e in proc.history if e["ev"] == "started") - 1
    result["extra_restarts"] = starts - len(finite)
    if not finite:
        return

    def other_process(first: Event, deadline: float) -> Event | None:
        return proc.wait_for(lambda e: _started()(e) and e["pid"] != first["pid"], deadline)

    def version_runs(version: str, deadline: float) -> Event | None:
        return proc.wait_for(_started(version), deadline)

    proc.drain(rng.uniform(*settings.spacing))
    result["same_size"] = same_size_edit(
        version_runs,
        other_process,
        project / reloader.edits,
        reloader.text,
        versions,
        settings.deadline,
    )
    if tree is not None:
        at_least, times = settings.burst_quiet
        quiet = min(settings.deadline, max(at_least, times * max(finite)))
        try:
            result["burst"] = _burst(proc, reloader, project, tree, versions, rng, settings, quiet)
        except RunnerDied as exc:
            # Say so in the burst's cell: dying on a branch switch is the burst's result.
            result["burst"] = {"error": f"exited: {str(exc).strip().splitlines()[-1]}"}
            raise


def measure_restart(
    reloader: Reloader, settings: ReloadSettings, workdir: Path, logdir: Path, seed: str
) -> dict[str, Any]:
    """All figures for one restarter; ``error`` says why some are missing."""
    result: dict[str, Any] = {"reloader": reloader.name}
    missing = reloader.missing()
    if missing:
        result["skipped"] = missing
        return result
    project = workdir / f"restart-{reloader.name}"
    try:
        tree = write_project(project, tree_files=settings.tree_files, seed=seed)
        t_spawn = time.monotonic()
        stderr_path = logdir / f"restart-{reloader.name}.stderr"
        with running(
            reloader.command(), env=reloader_env(), cwd=project, stderr_path=stderr_path
        ) as proc:
            first = proc.wait_for(_started("v0"), t_spawn + settings.start_deadline)
            if first is None:
                result["error"] = f"no first start within {settings.start_deadline:.0f} s"
                return result
            result["startup_s"] = first["t"] - t_spawn
            _phases(proc, reloader, project, tree, random.Random(seed), settings, result)
        result["strays"] = proc.strays
    except RunnerDied as exc:
        result["error"] = str(exc).replace("runner exited", "the reloader exited", 1)
    finally:
        shutil.rmtree(project, ignore_errors=True)
    return result


def measure_floor(settings: ReloadSettings, workdir: Path, logdir: Path) -> list[float]:
    """Seconds from spawning ``python bench_script.py`` (no reloader) to its line: the part of
    every restart no reloader can save."""
    project = workdir / "restart-floor"
    samples: list[float] = []
    try:
        write_project(project, tree_files=0, seed="floor")
        for _ in range(settings.floor_runs):
            t0 = time.monotonic()
            with running(
                [sys.executable, "bench_script.py"],
                env=reloader_env(),
                cwd=project,
                stderr_path=logdir / "restart-floor.stderr",
            ) as proc:
                event = proc.wait_for(_started(), t0 + settings.deadline)
                if event is not None:
                    samples.append(event["t"] - t0)
    except RunnerDied:
        pass
    finally:
        shutil.rmtree(project, ignore_errors=True)
    return samples
