"""The markdown report: one table per tree with ratios to the best peer, the noise, the targets.

Everything here is pure: raw results in, text out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._heavy_report import render_heavy
from ._live import render_live
from ._peers import Peer
from ._reload_report import ReloadRow, render_restart, render_serve, summarize_reload
from ._reload_report import targets as reload_targets
from ._reloaders import RESTARTERS, SERVERS, Reloader
from ._stats import iqr, median, median_ci, percentile, spread

__all__ = ["Row", "format_percent", "format_seconds", "render", "summarize"]


@dataclass
class Row:
    """One watcher's figures on one tree (seconds, %, MB), reduced from the raw samples."""

    peer: Peer
    error: str | None = None
    retried_after: str | None = None
    p50: float | None = None
    p95: float | None = None
    trials: int = 0
    missed: int = 0
    p50_ci: tuple[float, float] | None = None
    new: float | None = None
    """p50 of new-file latency; inf if never seen; None if not tried."""
    deleted: float | None = None
    reedit: float | None = None
    """p50 of saving the same file again and again."""
    cpu: float | None = None
    cpu_range: tuple[float, float] | None = None
    daemon_cpu: float | None = None
    background: float | None = None
    rss: float | None = None
    sweep: float | None = None
    sweep_iqr: float | None = None
    sweeps: int = 0
    sweep_estimated: bool = False
    stall: float | None = None
    burst: dict[str, Any] | None = None


def _estimated_sweep(cpu_percent: float, poll_delay: float) -> float | None:
    """CPU seconds per sweep of a poller that sleeps ``poll_delay`` between sweeps.

    At a duty cycle c = sweep / (sweep + delay): sweep = c * delay / (1 - c).
    """
    c = cpu_percent / 100
    return None if c >= 1 else c * poll_delay / (1 - c)


def summarize(peer: Peer, raw: dict[str, Any]) -> Row:
    """Reduce one watcher's raw samples on one tree to the figures the report shows."""
    row = Row(peer, error=raw.get("error"), retried_after=raw.get("retried_after"))
    modify = raw.get("modify", [])
    row.trials, row.missed = len(modify), sum(1 for s in modify if math.isinf(s))
    row.p50, row.p95 = median(modify), percentile(modify, 95)
    row.p50_ci = median_ci(modify)
    if raw.get("new"):
        row.new = median(raw["new"])
    if raw.get("deleted"):
        row.deleted = median(raw["deleted"])
    if raw.get("reedit"):
        row.reedit = median(raw["reedit"])
    idle = raw.get("idle")
    if idle:
        row.cpu, row.cpu_range = median(idle["cpu"]), spread(idle["cpu"])
        row.background = median(idle["background"])
        row.rss = idle["rss_mb"]
        if "daemon_cpu" in idle:
            row.daemon_cpu = median(idle["daemon_cpu"])
    sweeps = raw.get("sweeps", [])
    row.sweeps = len(sweeps)
    if sweeps:
        row.sweep, row.sweep_iqr = median(sweeps), iqr(sweeps)
    elif peer.poll_delay is not None and row.cpu is not None:
        row.sweep, row.sweep_estimated = _estimated_sweep(row.cpu, peer.poll_delay), True
    if raw.get("stall"):
        row.stall = raw["stall"]["max_gap"]
    row.burst = raw.get("burst")
    return row


# ---- formatting


def format_seconds(value: float | None, *, missed: str = "missed") -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return missed
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def format_percent(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} %" if value < 1 else f"{value:.1f} %"


def _megabytes(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MB"


def _ratio(value: float | None, best: float | None) -> str:
    if value is None or best is None or not math.isfinite(value) or best <= 0:
        return ""
    r = value / best
    text = f"{r:.0f}" if r >= 10 else f"{r:.2f}" if r < 0.1 else f"{r:.1f}"
    return f" ({text}x)"


Column = tuple[str, Callable[[Row], float | None], Callable[[float | None], str]]


def _columns(fuse: bool) -> list[Column]:
    columns: list[Column] = [
        ("modify p50", lambda r: r.p50, format_seconds),
        ("modify p95", lambda r: r.p95, format_seconds),
        ("same file again p50", lambda r: r.reedit, format_seconds),
        ("new file p50", lambda r: r.new, lambda v: format_seconds(v, missed="never")),
        ("deleted p50", lambda r: r.deleted, format_seconds),
        ("idle CPU", lambda r: r.cpu, format_percent),
    ]
    if fuse:
        columns.append(("FUSE daemon CPU", lambda r: r.daemon_cpu, format_percent))
    columns += [
        ("RSS", lambda r: r.rss, _megabytes),
        ("one sweep", lambda r: None if r.sweep_estimated else r.sweep, format_seconds),
    ]
    return columns


def _best(rows: Sequence[Row], get: Callable[[Row], float | None]) -> float | None:
    values = [v for r in rows if not r.peer.ours and (v := get(r)) is not None]
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else None


def _burst_cell(burst: dict[str, Any] | None) -> str:
    if not burst or "batches" not in burst:
        return "-"
    return f"{burst['batches']} ({burst['seen']}/{burst['files']} seen)"


def _sweep_cell(row: Row, best: float | None) -> str:
    if row.sweep_estimated and row.sweep is not None:
        return f"≈{format_seconds(row.sweep)} CPU"
    return format_seconds(row.sweep) + _ratio(row.sweep, best)


def _table(rows: Sequence[Row], fuse: bool) -> list[str]:
    columns = _columns(fuse)
    header = ["watcher", *(name for name, _, _ in columns), "loop stall", "burst: batches"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    bests = [_best(rows, get) for _, get, _ in columns]
    for row in rows:
        name = f"**{row.peer.label}**" if row.peer.ours else row.peer.label
        if row.error and row.p50 is None:
            lines.append(f"| {name} | error: {row.error.splitlines()[0]} |")
            continue
        cells = [name]
        for (title, get, fmt), best in zip(columns, bests, strict=True):
            if title == "one sweep":
                cells.append(_sweep_cell(row, best))
            else:
                cells.append(fmt(get(row)) + _ratio(get(row), best))
        cells += [format_seconds(row.stall), _burst_cell(row.burst)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _problems(rows: Sequence[Row]) -> list[str]:
    """A line per watcher that failed or needed a second start, with the first line of why."""
    lines = []
    for row in rows:
        if row.error:
            lines.append(f"- {row.peer.label}: {row.error.splitlines()[0]}")
        if row.retried_after:
            first = row.retried_after.splitlines()[0]
            lines.append(f"- {row.peer.label}: started a second time, after: {first}")
    return ["", *lines] if lines else []


def _range(bounds: tuple[float, float] | None, fmt: Callable[[float | None], str]) -> str:
    return "-" if bounds is None else f"{fmt(bounds[0])} to {fmt(bounds[1])}"


def _noise_table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| watcher | edits (missed) | p50 90% CI | idle CPU per window | sweep IQR (sweeps) "
        "| other load |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ci, cpu = _range(row.p50_ci, format_seconds), _range(row.cpu_range, format_percent)
        sweep = f"{format_seconds(row.sweep_iqr)} ({row.sweeps})" if row.sweeps else "-"
        lines.append(
            f"| {row.peer.label} | {row.trials} ({row.missed}) | {ci} | {cpu} | {sweep} "
            f"| {format_percent(row.background)} |"
        )
    return lines


# ---- targets (issue 5)


@dataclass
class _Target:
    text: str
    tree: str
    ours: str
    reference: str
    met: bool | None


def _find(rows: dict[str, Row], name: str) -> Row | None:
    row = rows.get(name)
    return row if row is not None and row.error is None else None


def _ok(value: float | None, limit: float | None) -> bool | None:
    if value is None or limit is None:
        return None
    return value <= limit


def _add(
    out: list[_Target], text: str, tree: str, ours: str, reference: str, met: bool | None
) -> None:
    out.append(_Target(text, tree, ours, reference, met))


def _p95_and_cpu(row: Row) -> str:
    return f"p95 {format_seconds(row.p95)}, idle CPU {format_percent(row.cpu)}"


def _cpu_at_p95(settings: Sequence[Row], p95: float) -> tuple[float, str] | None:
    """asyncreload's idle CPU at a p95 of ``p95`` (watchfiles' poller's), and how it was found.

    "At equal p95": the cheapest measured setting at least that quick, or, where two settings
    lie on either side of it, the CPU interpolated linearly between them (the poll interval moves
    both figures smoothly). None if no setting is that quick.
    """
    # Sorted by p95 alone: two settings with the same figures would otherwise compare the rows.
    points = sorted(
        ((r.p95, r.cpu, r) for r in settings if r.p95 is not None and r.cpu is not None),
        key=lambda point: point[0],
    )
    quick = [(p, c, r) for p, c, r in points if p <= p95]
    slow = [(p, c, r) for p, c, r in points if p > p95]
    if not quick:
        return None
    _, cpu, best = min(quick, key=lambda point: point[1])
    found = (cpu, f"{best.peer.label}: {_p95_and_cpu(best)}")
    if slow:
        (p0, c0, r0), (p1, c1, r1) = quick[-1], slow[0]
        at = c0 + (c1 - c0) * (p95 - p0) / (p1 - p0)
        if at < found[0]:
            found = (
                at,
                f"{format_percent(at)} at p95 {format_seconds(p95)}, interpolated between "
                f"{r0.peer.label} ({_p95_and_cpu(r0)}) and {r1.peer.label} ({_p95_and_cpu(r1)})",
            )
    return found


def _targets_for(label: str, kind: str, size: int, rows: dict[str, Row]) -> list[_Target]:
    """The targets of issue 5 that this tree's figures can check."""
    out: list[_Target] = []
    auto, poll = _find(rows, "asyncreload"), _find(rows, "asyncreload-poll")
    wf, wfp, hup = _find(rows, "watchfiles"), _find(rows, "watchfiles-poll"), _find(rows, "hupper")
    local, big = kind == "local", size >= 10_000
    if local and auto and wf and wf.p50 is not None:
        ok = _ok(auto.p50, wf.p50 / 2)
        _add(
            out,
            "events: p50 <= 1/2 watchfiles'",
            label,
            format_seconds(auto.p50),
            format_seconds(wf.p50),
            ok,
        )
    if local and auto and wf and wf.cpu is not None:
        ok = _ok(auto.cpu, 2 * wf.cpu)
        _add(
            out,
            "events: idle CPU <= 2x watchfiles'",
            label,
            format_percent(auto.cpu),
            format_percent(wf.cpu),
            ok,
        )
    if local and auto and auto.burst and "batches" in auto.burst:
        b = auto.burst
        ok = b["batches"] == 1 and b["seen"] == b["files"]
        _add(out, "2,000-file burst: 1 batch, all seen", label, _burst_cell(b), "1", ok)
    if local and big and poll and hup and hup.sweep is not None:
        ok = _ok(poll.sweep, 1.2 * hup.sweep)
        _add(
            out,
            "polling: sweep <= 1.2x hupper's",
            label,
            format_seconds(poll.sweep),
            format_seconds(hup.sweep),
            ok,
        )
    if local and big and poll and wfp and wfp.cpu is not None and wfp.p95 is not None:
        settings = [r for r in (poll, _find(rows, "asyncreload-poll400")) if r is not None]
        found = _cpu_at_p95(settings, wfp.p95)
        ours, ok = f"{poll.peer.label}: {_p95_and_cpu(poll)}", False
        if found is not None:
            cpu, ours = found
            ok = cpu <= wfp.cpu
        _add(
            out,
            "polling: idle CPU <= watchfiles force_polling's at a p95 no worse",
            label,
            ours,
            _p95_and_cpu(wfp),
            ok,
        )
    if kind == "fuse" and big and auto and wfp and wfp.p95 is not None:
        ok = _ok(auto.p95, min(wfp.p95 / 3, 1.0))
        _add(
            out,
            "FUSE: p95 <= 1/3 watchfiles force_polling's, < 1 s",
            label,
            _p95_and_cpu(auto),
            _p95_and_cpu(wfp),
            ok,
        )
    for row in (auto, poll) if size >= 100_000 else ():
        if row and row.stall is not None:
            _add(
                out,
                f"loop stall <= 20 ms ({row.peer.label})",
                label,
                format_seconds(row.stall),
                "20 ms",
                row.stall <= 0.020,
            )
    return out


def _targets_table(targets: Sequence[_Target]) -> list[str]:
    lines = ["| target | where | asyncreload | reference | met |", "|---|---|---|---|---|"]
    for t in targets:
        met = "?" if t.met is None else "yes" if t.met else "**no**"
        lines.append(f"| {t.text} | {t.tree} | {t.ours} | {t.reference} | {met} |")
    return lines


# ---- the whole report


def _source_warning(results: Sequence[dict[str, Any]]) -> list[str]:
    """Say so if asyncreload's rows measured different versions of its source."""
    versions: dict[str, list[str]] = {}
    for r in results:
        if "source" in r:
            versions.setdefault(r["source"], []).append(f"{r['peer']} on {r['tree']}")
    if len(versions) < 2:
        return []
    lines = [
        "## Warning: asyncreload changed during the run",
        "",
        "Its source (an editable install) was edited while the run went on; rows by version:",
        "",
    ]
    lines += [f"- `{digest}`: {'; '.join(rows)}" for digest, rows in versions.items()]
    return [*lines, ""]


def _reload_rows(registry: Sequence[Reloader], section: dict[str, Any] | None) -> list[ReloadRow]:
    """Rows for the restart or serve results, in the registry's order."""
    by_name = {r["reloader"]: r for r in (section or {}).get("results", [])}
    return [summarize_reload(rl, by_name[rl.name]) for rl in registry if rl.name in by_name]


def render(
    meta: dict[str, Any],
    trees: Sequence[dict[str, Any]],
    peers: Sequence[Peer],
    results: list[Any],
    restart: dict[str, Any] | None = None,
    serve: dict[str, Any] | None = None,
    live: dict[str, Any] | None = None,
    heavy: dict[str, Any] | None = None,
) -> str:
    """The markdown report for one run; ``restart``, ``serve``, ``live`` and ``heavy`` are
    those measurements' sections of the raw results, if they ran."""
    by_key = {(r["tree"], r["peer"]): r for r in results}
    out = [
        "# asyncreload benchmark",
        "",
        f"{meta['date']} · {meta['machine']} · Python {meta['python']} · "
        f"{meta['versions']} at {meta.get('revision', '?')} · `{meta['command']}` · "
        f"{meta['duration_s'] / 60:.1f} min",
        "",
        *([f"**Note:** {meta['note']}", ""] if meta.get("note") else []),
        "Latency is write to reported (CLOCK_MONOTONIC on both sides). Ratios are to the best "
        "peer other than asyncreload in each column (lower is better; below 1 means asyncreload "
        "beats every peer). See bench/README.md for what each column means.",
        "",
    ]
    backgrounds: list[float] = []
    targets: list[_Target] = []
    for tree in trees:
        rows = [
            summarize(p, by_key[(tree["label"], p.name)])
            for p in peers
            if (tree["label"], p.name) in by_key
        ]
        if not rows:
            continue
        backgrounds += [r.background for r in rows if r.background is not None]
        fuse = tree["kind"] == "fuse"
        out += [f"## {tree['label']}", ""]
        out += _table(rows, fuse)
        out += _problems(rows)
        out += ["", "<details><summary>noise</summary>", ""]
        out += _noise_table(rows)
        out += ["", "</details>", ""]
        targets += _targets_for(
            tree["label"], tree["kind"], tree["size"], {r.peer.name: r for r in rows}
        )
    restart_rows = _reload_rows(RESTARTERS, restart)
    serve_rows = _reload_rows(SERVERS, serve)
    out += render_restart(
        restart_rows, (restart or {}).get("floor", []), (restart or {}).get("watchdog")
    )
    out += render_serve(serve_rows)
    if live is not None:
        out += render_live(live)
    out += render_heavy(heavy)
    targets += [_Target(*t) for t in reload_targets(restart_rows, serve_rows)]
    if targets:
        out += ["## Targets (issue 5)", ""]
        out += _targets_table(targets)
        out.append("")
    out += _source_warning(results)
    if backgrounds:
        out += [
            "## Noise",
            "",
            "Other processes used a median "
            f"{format_percent(statistics.median(backgrounds))} and at most "
            f"{format_percent(max(backgrounds))} of one core during the idle windows "
            f"(of {meta['cores']} cores). Figures from a run with other load are less "
            "comparable; the per-tree *noise* sections give the p50's bootstrap interval and "
            "the spread of the idle windows.",
            "",
        ]
    return "\n".join(out)
