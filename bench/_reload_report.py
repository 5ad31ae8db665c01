"""The markdown tables of the restart and serve measurements, and the targets they decide.

Everything here is pure: raw results in, text out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._reloaders import Reloader
from ._stats import median, median_ci, percentile

__all__ = ["ReloadRow", "render_restart", "render_serve", "summarize_reload", "targets"]

Target = tuple[str, str, str, str, bool | None]
"""(target, where, asyncreload's figure, the reference, met)."""


@dataclass
class ReloadRow:
    """One reloader's figures (seconds), reduced from the raw samples."""

    reloader: Reloader
    skipped: str | None = None
    error: str | None = None
    p50: float | None = None
    p95: float | None = None
    trials: int = 0
    missed: int = 0
    p50_ci: tuple[float, float] | None = None
    startup: float | None = None
    same_size: dict[str, Any] | None = None
    burst: dict[str, Any] | None = None
    extra: int | None = None
    """Restarts (reloads) beyond one per edit."""
    strays: int | None = None
    requests: int | None = None


def summarize_reload(reloader: Reloader, raw: dict[str, Any]) -> ReloadRow:
    edits = raw.get("edits", [])
    return ReloadRow(
        reloader,
        skipped=raw.get("skipped"),
        error=raw.get("error"),
        p50=median(edits),
        p95=percentile(edits, 95),
        trials=len(edits),
        missed=sum(1 for s in edits if math.isinf(s)),
        p50_ci=median_ci(edits),
        startup=raw.get("startup_s"),
        same_size=raw.get("same_size"),
        burst=raw.get("burst"),
        extra=raw.get("extra_restarts", raw.get("extra_reloads")),
        strays=raw.get("strays"),
        requests=raw.get("requests"),
    )


# ---- formatting (the same units as the watcher tables)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "missed"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _ratio(value: float | None, best: float | None) -> str:
    if value is None or best is None or not math.isfinite(value) or best <= 0:
        return ""
    r = value / best
    # Two decimals below 1: the serve target is a ratio of 1/2, and 0.1x could be 0.05 or 0.149.
    text = f"{r:.0f}" if r >= 10 else f"{r:.2f}" if r < 1 else f"{r:.1f}"
    return f" ({text}x)"


def _same_size_cell(same: dict[str, Any] | None) -> str:
    if not same:
        return "-"
    outcome = same.get("outcome")
    if outcome == "new":
        return f"new code ({_seconds(same.get('s'))})"
    if outcome == "stale":
        return f"**old code** (stale bytecode; {_seconds(same.get('s'))})"
    if outcome == "missed":
        return "no restart"
    if outcome == "untested":
        return f"- ({same.get('why', 'untested')})"
    return f"{outcome}: {same.get('got')}"


def _burst_cell(burst: dict[str, Any] | None) -> str:
    if not burst:
        return "-"
    if "error" in burst:
        return f"**{burst['error']}**"
    final = burst.get("final")
    runs = "new code" if final else "-" if final is None else "**old code**"
    return f"{burst['restarts']} ({runs} at the end)"


def _name(row: ReloadRow) -> str:
    return f"**{row.reloader.label}**" if row.reloader.ours else row.reloader.label


def _full_label(reloader: Reloader) -> str:
    """The label with the app, where the same server runs two (asyncreload serve)."""
    return f"{reloader.label} ({reloader.app})" if reloader.app else reloader.label


def _noise(rows: Sequence[ReloadRow], extra_name: str) -> list[str]:
    lines = [
        f"| reloader | edits (missed) | p50 90% CI | {extra_name} | left behind on stop |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        if row.skipped:
            continue
        ci = (
            "-" if row.p50_ci is None else f"{_seconds(row.p50_ci[0])} to {_seconds(row.p50_ci[1])}"
        )
        extra = "-" if row.extra is None else str(row.extra)
        strays = "-" if row.strays is None else str(row.strays)
        lines.append(
            f"| {_full_label(row.reloader)} | {row.trials} ({row.missed}) | {ci} | {extra} "
            f"| {strays} |"
        )
    return lines


def _problems(rows: Sequence[ReloadRow]) -> list[str]:
    lines = []
    for row in rows:
        if row.skipped:
            lines.append(f"- {_full_label(row.reloader)}: skipped, {row.skipped}")
        elif row.error:
            lines.append(f"- {_full_label(row.reloader)}: {_first_and_last(row.error)}")
    return ["", *lines] if lines else []


def _first_and_last(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0]} ... {lines[-1]}"


def _best(rows: Sequence[ReloadRow], get: Callable[[ReloadRow], float | None]) -> float | None:
    values = [v for r in rows if not r.reloader.ours and (v := get(r)) is not None]
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else None


def render_restart(
    rows: Sequence[ReloadRow], floor: Sequence[float], watchdog: bool | None
) -> list[str]:
    """The "edit to a restarted process" section."""
    if not rows:
        return []
    out = [
        "## Edit to a restarted process",
        "",
        "`bench_script.py` imports `bench_version.py` and prints the version it got; each edit "
        "saves a new `bench_version.py` (atomic rename, a different size each time). Latency is "
        "the save to the new process's line, after its import. Ratios are to the best reloader "
        "other than asyncreload in the column.",
        "",
        "| reloader | edit → new process p50 | p95 | same-size edit within 1 s "
        "| 2,000-file burst: restarts | first start |",
        "|---|---|---|---|---|---|",
    ]
    best50, best95 = _best(rows, lambda r: r.p50), _best(rows, lambda r: r.p95)
    for row in rows:
        if row.skipped or (row.error and row.p50 is None):
            why = f"skipped: {row.skipped}" if row.skipped else f"error: {_first_line(row.error)}"
            out.append(f"| {_name(row)} | {why} |")
            continue
        out.append(
            f"| {_name(row)} | {_seconds(row.p50)}{_ratio(row.p50, best50)} "
            f"| {_seconds(row.p95)}{_ratio(row.p95, best95)} | {_same_size_cell(row.same_size)} "
            f"| {_burst_cell(row.burst)} | {_seconds(row.startup)} |"
        )
    out += _problems(rows)
    out.append("")
    if floor:
        out += [
            f"The floor: `python bench_script.py` alone takes {_seconds(median(floor))} from "
            f"spawn to its line (median of {len(floor)}); every restart pays it.",
            "",
        ]
    settled = [r for r in rows if r.reloader.settle and not r.skipped]
    for row in settled:
        out += [
            f"{row.reloader.label}: the first edit comes {row.reloader.settle:.1f} s after its "
            "first start; an edit sooner than that is not noticed (see bench/README.md).",
            "",
        ]
    if watchdog is not None:
        note = (
            "hupper, werkzeug and `flask run` use watchdog here (it is installed)."
            if watchdog
            else "hupper polls (1 s), werkzeug and `flask run` use werkzeug's stat reloader (1 s): "
            "watchdog is not installed."
        )
        out += [note, ""]
    out += ["<details><summary>noise</summary>", ""]
    out += _noise(rows, "extra restarts")
    out += ["", "</details>", ""]
    return out


def _first_line(text: str | None) -> str:
    return "" if not text else text.strip().splitlines()[0]


def render_serve(rows: Sequence[ReloadRow]) -> list[str]:
    """The "edit to first HTTP response with the new code" section."""
    if not rows:
        return []
    out = [
        "## Edit to first HTTP response with the new code",
        "",
        "Each edit saves the app module with a new version (atomic rename, a different size each "
        "time); a client polls `GET /` (`Connection: close`, 5 ms apart) until the body shows "
        "it. Ratios are to the peer serving the same app: `uvicorn --reload` for the ASGI app, "
        "`flask run --reload` for the Flask app.",
        "",
        "| server | app | edit → new response p50 | p95 | same-size edit within 1 s "
        "| first start |",
        "|---|---|---|---|---|---|",
    ]
    by_name = {r.reloader.name: r for r in rows}
    for row in rows:
        if row.skipped or (row.error and row.p50 is None):
            why = f"skipped: {row.skipped}" if row.skipped else f"error: {_first_line(row.error)}"
            out.append(f"| {_name(row)} | {row.reloader.app} | {why} |")
            continue
        ref = by_name.get(row.reloader.compare_to or "")
        p50 = _seconds(row.p50) + _ratio(row.p50, ref.p50 if ref else None)
        p95 = _seconds(row.p95) + _ratio(row.p95, ref.p95 if ref else None)
        out.append(
            f"| {_name(row)} | {row.reloader.app} | {p50} | {p95} "
            f"| {_same_size_cell(row.same_size)} | {_seconds(row.startup)} |"
        )
    out += _problems(rows)
    out += ["", "<details><summary>noise</summary>", ""]
    out += _noise(rows, "extra reloads")
    requests = [f"{_full_label(r.reloader)} {r.requests}" for r in rows if r.requests]
    if requests:
        out += ["", "Requests sent: " + "; ".join(requests) + "."]
    out += ["", "</details>", ""]
    return out


def targets(restart: Sequence[ReloadRow], serve: Sequence[ReloadRow]) -> list[Target]:
    """The targets of issue 5 that these figures decide."""
    out: list[Target] = []
    run = next((r for r in restart if r.reloader.name == "asyncreload-run"), None)
    if run and run.burst and "restarts" in run.burst:
        b = run.burst
        met = b["restarts"] <= 2 and bool(b.get("final"))
        out.append(
            (
                "run: 2,000-file burst, 1 restart (at most 2), new code at the end",
                "asyncreload run",
                _burst_cell(b),
                "1",
                met,
            )
        )
    rows = {r.reloader.name: r for r in serve}
    ours, ref = rows.get("asyncreload-serve"), rows.get("uvicorn-reload")
    if ours and ref and ours.p50 is not None and ref.p50 is not None and ours.error is None:
        met = math.isfinite(ours.p50) and math.isfinite(ref.p50) and ours.p50 <= ref.p50 / 2
        out.append(
            (
                "serve: edit to new response p50 <= 1/2 uvicorn --reload's",
                "ASGI app",
                _seconds(ours.p50) + _ratio(ours.p50, ref.p50),
                _seconds(ref.p50),
                met,
            )
        )
    return out
