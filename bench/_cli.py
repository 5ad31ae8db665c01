"""``python -m bench``: options, the loop over trees and watchers, and the result files."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from ._fuse import FuseUnavailable, fuse_problem, passthrough
from ._heavy import HEAVY_SERVERS, measure_heavy
from ._live import measure_live
from ._measure import REPO, Settings, measure
from ._peers import PEERS, Peer, select
from ._reload_report import summarize_reload
from ._reloaders import (
    RESTARTERS,
    SERVERS,
    Reloader,
    ReloadSettings,
    select_reloaders,
    watchdog_installed,
)
from ._report import format_percent, format_seconds, render, summarize
from ._restart import measure_floor, measure_restart
from ._serve import measure_serve
from ._trees import Tree, generate

__all__ = ["main"]

RESULTS = Path(__file__).parent / "results"

FULL = Settings()
QUICK = Settings(
    trials=3,
    min_trials=3,
    budget=3.0,
    new_trials=1,
    idle_seconds=1.2,
    idle_windows=2,
    deadline=4.0,
    spacing=(0.05, 0.2),
    burst_quiet=(0.8, 1.2),
    new_deadline=(0.5, 1.5),
    stall_sweeps=2,
    stall_seconds=0.5,
)
QUICK_RELOAD = ReloadSettings(trials=3, spacing=(0.3, 0.6), burst_quiet=(1.5, 1.5))
MEASUREMENTS = ("watch", "restart", "serve", "live", "heavy")
"""``watch``: the watchers on the trees; ``restart``: edit to a restarted process; ``serve``:
edit to the first HTTP response with the new code; ``live``: the same in a browser; ``heavy``:
edit to the first new response of a heavy FastAPI app and of a Django site."""
HEAVY_TRIALS = 8
"""Edits of each kind per server in the heavy measurement (``--trials`` overrides it; ``--quick``
makes it 3)."""
FUSE_MAX = 10_000
"""Bigger FUSE trees are out of scope: a sequential sweep of 100,000 files there takes ~15 s."""


def _sizes(text: str) -> list[int]:
    """``1000,10_000`` -> [1000, 10000]."""
    return [int(s) for s in text.replace("_", "").split(",") if s.strip()]


def _spacing(text: str) -> tuple[float, float]:
    """``0.6,1.2`` -> (0.6, 1.2): the least and the most seconds between two edits."""
    low, _, high = text.partition(",")
    pair = (float(low), float(high or low))
    if not 0 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"expected LO,HI with 0 <= LO <= HI, got {text!r}")
    return pair


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _all_names() -> list[str]:
    """What ``--peers`` accepts: the watchers', then the reloaders' names."""
    return [p.name for p in PEERS] + [r.name for r in (*RESTARTERS, *SERVERS, *HEAVY_SERVERS)]


def _jsonable(value: Any) -> Any:
    """Raw results as JSON: a missed detection (infinity) becomes the string "missed"."""
    if isinstance(value, float) and math.isinf(value):
        return "missed"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    """The inverse of :func:`_jsonable`."""
    if value == "missed":
        return math.inf
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark asyncreload against other file watchers (see bench/README.md).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 and 10,000 files, fewer trials (a few minutes)"
    )
    parser.add_argument(
        "--sizes", type=_sizes, help="local tree sizes, e.g. 1000,10000 (FUSE: those <= 10,000)"
    )
    parser.add_argument(
        "--only",
        type=_names,
        metavar="WHAT",
        help="only these measurements: " + ",".join(MEASUREMENTS) + " (default: all)",
    )
    parser.add_argument(
        "--restart",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure edit to a restarted process (default: yes)",
    )
    parser.add_argument(
        "--serve",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure edit to the first HTTP response with the new code (default: yes)",
    )
    parser.add_argument(
        "--peers",
        type=_names,
        help="watchers and reloaders to run: " + ",".join(_all_names()),
    )
    parser.add_argument(
        "--local",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure on local-disk trees (default: yes)",
    )
    parser.add_argument(
        "--fuse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure on FUSE passthrough mounts (default: yes)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        help="edits per watcher and tree, and per reloader (heavy: per kind of edit, default "
        f"{HEAVY_TRIALS})",
    )
    parser.add_argument(
        "--spacing",
        type=_spacing,
        metavar="LO,HI",
        help="random pause in seconds before each reloader's edit (default 0.6,1.2; --quick "
        "0.3,0.6)",
    )
    parser.add_argument("--seed", type=int, default=5, help="random seed for files and spacing")
    parser.add_argument("--tmpdir", help="where to write the trees (default: the system's)")
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="directory for latest.md and latest.json"
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only print the report of an earlier run"
    )
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _tree(workdir: str, kind: str, size: int, seed: int) -> Iterator[Tree]:
    """Write a tree (and mount it, for FUSE); remove it afterwards."""
    base = os.path.join(workdir, f"{kind}-{size}")
    write_root = os.path.join(base, "backing" if kind == "fuse" else "tree")
    os.makedirs(write_root)
    try:
        t0 = time.monotonic()
        files, dirs = generate(write_root, size, random.Random(seed))
        os.sync()  # don't let writeback of the new tree run during the first measurement
        _log(f"wrote {size:,} files in {len(dirs):,} directories ({time.monotonic() - t0:.1f} s)")
        where = "FUSE passthrough (changed on the backing side)" if kind == "fuse" else "local disk"
        label = f"{where}, {size:,} files"
        if kind == "local":
            yield Tree(label, kind, size, write_root, write_root, files, dirs)
            return
        mountpoint = os.path.join(base, "mount")
        with passthrough(write_root, mountpoint) as daemon_pid:
            yield Tree(label, kind, size, write_root, mountpoint, files, dirs, daemon_pid)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _versions() -> str:
    names = ["asyncreload", "watchfiles", "uvicorn", "werkzeug", "hupper", "flask"]
    found = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    return ", ".join(found)


def _revision() -> str:
    """The checkout measured: commit, and whether asyncreload/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stdout.strip()
        # --no-optional-locks: a benchmark must not even refresh the index.
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--", "asyncreload"],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"{head} (asyncreload/ modified)" if dirty else head


def _machine() -> str:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "")
    return f"Linux {platform.release()}, {os.cpu_count()} cores {model}".strip()


def _progress(peer: Peer, raw: dict[str, Any]) -> str:
    row = summarize(peer, raw)
    if row.error:
        return "error: " + row.error.replace("\n", "\n    ")
    return (
        f"p50 {format_seconds(row.p50)} p95 {format_seconds(row.p95)} "
        f"new {format_seconds(row.new, missed='never')} idle {format_percent(row.cpu)} "
        f"sweep {format_seconds(row.sweep)}"
    )


def _reload_progress(raw: dict[str, Any], reloader: Reloader) -> str:
    row = summarize_reload(reloader, raw)
    if row.skipped:
        return f"skipped: {row.skipped}"
    text = f"p50 {format_seconds(row.p50)} p95 {format_seconds(row.p95)}"
    if row.same_size:
        text += f" same-size {row.same_size['outcome']}"
    if row.burst:
        text += f" burst {row.burst.get('restarts', row.burst.get('error'))}"
    if row.error:
        text += " error: " + row.error.strip().replace("\n", "\n    ")
    return text


def _selected(args: argparse.Namespace) -> set[str]:
    """The measurements to run."""
    chosen = set(args.only or MEASUREMENTS)
    if not args.restart:
        chosen.discard("restart")
    if not args.serve:
        chosen.discard("serve")
    return chosen


def _check_names(args: argparse.Namespace) -> None:
    """Unknown names in ``--only`` or ``--peers`` are an error (ValueError)."""
    unknown = [m for m in args.only or () if m not in MEASUREMENTS]
    if unknown:
        raise ValueError(f"unknown measurement(s): {', '.join(unknown)}; known: {MEASUREMENTS}")
    known = _all_names()
    unknown = [n for n in args.peers or () if n not in known]
    if unknown:
        raise ValueError(f"unknown peer(s): {', '.join(unknown)}; known: {', '.join(known)}")


def _run_reloaders(
    what: str,
    reloaders: list[Reloader],
    settings: ReloadSettings,
    workdir: Path,
    logdir: Path,
    seed: int,
) -> dict[str, Any]:
    """One of the reload measurements ("restart" or "serve") for each reloader, in order."""
    section: dict[str, Any] = {"results": []}
    if what == "restart":
        section["watchdog"] = watchdog_installed()
        section["floor"] = measure_floor(settings, workdir, logdir)
        floor = [format_seconds(f) for f in section["floor"]]
        _log(f"[restart] python bench_script.py alone: {', '.join(floor)}")
    for reloader in reloaders:
        _log(f"[{what}] {reloader.label} ({reloader.name}) ...")
        t0 = time.monotonic()
        measure_one = measure_restart if what == "restart" else measure_serve
        raw = measure_one(reloader, settings, workdir, logdir, f"{seed}/{reloader.name}")
        raw["elapsed_s"] = time.monotonic() - t0
        section["results"].append(raw)
        _log(f"    {_reload_progress(raw, reloader)} ({raw['elapsed_s']:.0f} s)")
    return section


def _plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(kind, size) of each tree, in order."""
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    # --quick leaves out the 10,000-file FUSE tree: Python pollers take seconds per sweep there.
    fuse_max = 1_000 if args.quick and not args.sizes else FUSE_MAX
    plan = [("local", s) for s in sizes] if args.local else []
    if args.fuse:
        problem = fuse_problem()
        if problem is None:
            plan += [("fuse", s) for s in sizes if s <= fuse_max]
        else:
            _log(f"FUSE trees skipped: {problem}")
    return plan


def run(args: argparse.Namespace, command: str) -> tuple[str, dict[str, Any]]:
    settings = QUICK if args.quick else FULL
    reload_settings = QUICK_RELOAD if args.quick else ReloadSettings()
    if args.trials:
        settings = replace(
            settings, trials=args.trials, min_trials=min(settings.min_trials, args.trials)
        )
        reload_settings = replace(reload_settings, trials=args.trials)
    if args.spacing:
        reload_settings = replace(reload_settings, spacing=args.spacing)
    heavy_trials = args.trials or (QUICK_RELOAD.trials if args.quick else HEAVY_TRIALS)
    heavy_settings = replace(reload_settings, trials=heavy_trials)
    chosen = _selected(args)
    names = args.peers
    # --peers names watchers and reloaders alike: each measurement runs those it knows.
    watchers = [n for n in names or () if n in {p.name for p in PEERS}]
    peers = select(watchers) if watchers or not names else []
    if not peers:
        chosen.discard("watch")
    restarters = select_reloaders(RESTARTERS, names) if "restart" in chosen else []
    servers = select_reloaders(SERVERS, names) if "serve" in chosen else []
    heavy_servers = select_reloaders(HEAVY_SERVERS, names) if "heavy" in chosen else []
    if not heavy_servers:
        chosen.discard("heavy")
    if names and "live" not in (args.only or ()):
        chosen.discard("live")  # it has no peers to name
    plan = _plan(args) if "watch" in chosen else []
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.monotonic()
    revision = _revision()  # now: the lead may commit while the run goes on
    results: list[dict[str, Any]] = []
    trees: list[dict[str, Any]] = []
    workdir = tempfile.mkdtemp(prefix="asyncreload-bench-", dir=args.tmpdir)
    logdir = Path(workdir) / "logs"
    logdir.mkdir()
    try:
        for kind, size in plan:
            try:
                with _tree(workdir, kind, size, args.seed) as tree:
                    trees.append({"label": tree.label, "kind": kind, "size": size})
                    for peer in (p for p in peers if kind in p.kinds):
                        _log(f"[{tree.label}] {peer.label} ...")
                        t_peer = time.monotonic()
                        # One stream per (tree, watcher): leaving a watcher out of a run does
                        # not change which files the others are given.
                        rng = random.Random(f"{args.seed}/{tree.label}/{peer.name}")
                        raw = measure(peer, tree, rng, settings, logdir)
                        raw["elapsed_s"] = time.monotonic() - t_peer
                        results.append(raw)
                        _log(f"    {_progress(peer, raw)} ({raw['elapsed_s']:.0f} s)")
            except FuseUnavailable as exc:
                _log(f"FUSE tree of {size:,} skipped: {exc}")
        reloads = {
            what: _run_reloaders(
                what, chosen_ones, reload_settings, Path(workdir), logdir, args.seed
            )
            for what, chosen_ones in (("restart", restarters), ("serve", servers))
            if chosen_ones
        }
        if "live" in chosen:
            _log("[live] asyncreload serve --live-reload in headless Chromium ...")
            t_live = time.monotonic()
            reloads["live"] = measure_live(
                reload_settings, Path(workdir), logdir, f"{args.seed}/live"
            )
            _log(f"    done ({time.monotonic() - t_live:.0f} s)")
        if "heavy" in chosen:
            # The logs outlive the run: they show where the time between a save and the first
            # new response went (asyncreload's "reloaded in N ms" lines, stamped).
            reloads["heavy"] = measure_heavy(
                heavy_servers, heavy_settings, Path(workdir), args.output / "logs", args.seed,
                _log,
            )  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": _versions(),
        "revision": revision,
        "command": command,
        "duration_s": time.monotonic() - t0,
        "settings": asdict(settings),
        "reload_settings": asdict(reload_settings),
        "heavy_settings": asdict(heavy_settings),
    }
    report = render(
        meta, trees, peers, results, reloads.get("restart"), reloads.get("serve"),
        reloads.get("live"), reloads.get("heavy"),
    )  # fmt: skip
    return report, {"meta": meta, "trees": trees, "results": results, **reloads}


def rerender(path: Path) -> str:
    """The report of an earlier run, from its raw JSON."""
    raw = _from_json(json.loads(path.read_text()))
    names = {r["peer"] for r in raw["results"]}
    peers = [p for p in PEERS if p.name in names]
    return render(
        raw["meta"], raw["trees"], peers, raw["results"], raw.get("restart"), raw.get("serve"),
        raw.get("live"), raw.get("heavy"),
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        print(rerender(args.render))
        return 0
    try:
        _check_names(args)
    except ValueError as exc:
        _log(f"python -m bench: {exc}")
        return 2
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    report, raw = run(args, command.strip())
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.md").write_text(report + "\n")
    text = json.dumps(_jsonable(raw), indent=1)
    (args.output / "latest.json").write_text(text + "\n")
    print(report)
    return 0
