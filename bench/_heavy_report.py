"""The markdown of the heavy-app measurement, and the targets of its issue.

Everything here is pure: the raw section in, text out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from ._heavy import HEAVY_SERVERS, SITES, START
from ._reload_report import _ratio, _seconds
from ._reloaders import Reloader
from ._stats import median, median_ci, percentile

__all__ = ["render_heavy"]

FASTAPI_RATIOS = {"main.py": 0.1, "routes.py": 0.3}
"""The issue's targets for the FastAPI app: asyncreload serve's p50 at most this many times
``uvicorn --reload``'s, for each kind of edit."""
DJANGO_RATIO = 0.25
"""The issue's target for Django: asyncreload serve at most 0.25x of runserver's p50."""

_STEPS = {
    "fastapi": {
        "third_party": "fastapi + pydantic + SQLAlchemy",
        "models": "`models.py`",
        "routes": "`routes.py`",
        "main": "`main.py`",
    },
    "django": {
        "third_party": "Django",
        "setup": "`django.setup()` (settings, apps, models)",
        "urls": "the URLconf (views, admin)",
        "wsgi": "the WSGI handler (middleware)",
    },
}


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.0f} ms"


def _import_lines(costs: dict[str, dict[str, Any]] | None) -> list[str]:
    if not costs:
        return []
    out = []
    for site, figures in costs.items():
        label = SITES[site].label
        if "error" in figures:
            out.append(f"- {label}: not measured: {figures['error']}")
            continue
        parts = []
        for step, name in _STEPS[site].items():
            if step in figures:
                wall = statistics.median(figures[step]["wall"])
                cpu = statistics.median(figures[step]["cpu"])
                parts.append(f"{name} {_ms(wall)} ({_ms(cpu)} CPU)")
        out.append(f"- {label}: " + ", ".join(parts))
    return [
        "Import costs in a fresh interpreter, bytecode warm (median of 3, wall and CPU): what "
        "a reload that imports the app afresh pays at least for the app's own modules, and one "
        "that starts a new interpreter for the rest too.",
        "",
        *out,
        "",
    ]


def _tallies(raw: dict[str, Any], kind: str) -> tuple[int, int, int]:
    """(responses, failed, stale) read while ``kind`` was the latest edit."""
    t = raw.get("responses", {}).get(kind)
    if not t:
        return 0, 0, 0
    return t["ok"] + t["failed"] + t["stale"], t["failed"], t["stale"]


def _server_figures(raw: dict[str, Any], kind: str) -> tuple[float | None, ...]:
    """p50s (seconds) of asyncreload's own "reloaded in N ms", of save to that line, and of
    that line to the first new response."""
    reloads = [r for r in raw.get("reloads", []) if r["kind"] == kind]
    answered = [r["answered_s"] for r in reloads if r.get("answered_s") is not None]
    if not reloads:
        return None, None, None
    return (
        statistics.median(r["server_ms"] for r in reloads) / 1000,
        statistics.median(r["logged_s"] for r in reloads),
        statistics.median(answered) if answered else None,
    )


def _label(reloader: Reloader) -> str:
    return f"**{reloader.label}**" if reloader.ours else reloader.label


def _rows(results: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        '| site | edit | server | edit → new response p50 | p95 | server\'s "reloaded in" p50 '
        '| save → "reloaded" line p50 | line → new response p50 | responses: failed / stale '
        "| first start |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for site in SITES.values():
        servers = [s for s in HEAVY_SERVERS if s.app == site.name and s.name in results]
        for kind, path in site.edits:
            for server in servers:
                raw = results[server.name]
                head = f"| {site.label} | `{path}` | {_label(server)} "
                if "skipped" in raw or ("error" in raw and not raw.get("edits", {}).get(kind)):
                    why = raw.get("skipped") or raw.get("error", "")
                    out.append(head + f"| {'skipped' if 'skipped' in raw else 'error'}: {why} |")
                    continue
                samples = raw["edits"].get(kind, [])
                ref = results.get(server.compare_to or "", {}).get("edits", {}).get(kind, [])
                p50, p95 = median(samples), percentile(samples, 95)
                own, logged, answered = _server_figures(raw, kind)
                n, failed, stale = _tallies(raw, kind)
                out.append(
                    head + f"| {_seconds(p50)}{_ratio(p50, median(ref))} "
                    f"| {_seconds(p95)}{_ratio(p95, percentile(ref, 95))} "
                    f"| {_ms(own)} | {_ms(logged)} | {_ms(answered)} "
                    f"| {failed} / {stale} of {n:,} "
                    f"| {_seconds(raw.get('startup_s'))} |"
                )
    return out


def _targets(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    ours = results.get("asyncreload-serve-heavy", {})
    theirs = results.get("uvicorn-reload-heavy", {})
    for kind, _path in SITES["fastapi"].edits:
        p50 = median(ours.get("edits", {}).get(kind, []))
        ref50 = median(theirs.get("edits", {}).get(kind, []))
        bound = FASTAPI_RATIOS.get(kind)
        if p50 is not None and ref50 is not None and math.isfinite(ref50) and bound:
            met = "yes" if p50 <= bound * ref50 else "**no**"
            lines.append(f"| FastAPI, heavy: `{kind}` edit, p50 at most {bound:g}x uvicorn "
                         f"--reload's | {_seconds(p50)}{_ratio(p50, ref50)} | {met} |")  # fmt: skip
    dj, ref = results.get("asyncreload-serve-django", {}), results.get("django-runserver", {})
    p50 = median(dj.get("edits", {}).get("views.py", []))
    ref50 = median(ref.get("edits", {}).get("views.py", []))
    if p50 is not None and ref50 is not None and math.isfinite(ref50) and ref50 > 0:
        met = "yes" if p50 <= DJANGO_RATIO * ref50 else "**no**"
        lines.append(f"| Django: p50 at most 0.25x runserver's | {_seconds(p50)}"
                     f"{_ratio(p50, ref50)} | {met} |")  # fmt: skip
    ours_names = {s.name for s in HEAVY_SERVERS if s.ours}
    checked = [r for r in results.values() if "responses" in r and r["reloader"] in ours_names]
    if checked:
        bad = sum(
            t["failed"] + t["stale"]
            for r in checked
            for kind, t in r["responses"].items()
            if kind != START
        )
        lines.append(f"| asyncreload serve: 0 failed, 0 stale responses | {bad} "
                     f"| {'yes' if bad == 0 else '**no**'} |")  # fmt: skip
    if not lines:
        return []
    return ["| target | asyncreload | met |", "|---|---|---|", *lines, ""]


def _noise(results: Sequence[dict[str, Any]]) -> list[str]:
    out = [
        "| server | edit | edits (missed) | p50 90% CI | failures by reason | extra reloads "
        "| left behind on stop |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {s.name: s for s in HEAVY_SERVERS}
    for raw in results:
        if "skipped" in raw or raw["reloader"] not in names:
            continue
        server = names[raw["reloader"]]
        for kind, samples in raw.get("edits", {}).items():
            ci = median_ci(samples)
            ci_text = "-" if ci is None else f"{_seconds(ci[0])} to {_seconds(ci[1])}"
            missed = sum(1 for s in samples if math.isinf(s))
            reasons = raw.get("responses", {}).get(kind, {}).get("reasons", {})
            why = ", ".join(f"{k} {v}" for k, v in reasons.items()) or "-"
            out.append(
                f"| {server.label} ({SITES[server.app].label}) | `{kind}` "
                f"| {len(samples)} ({missed}) | {ci_text} | {why} "
                f"| {raw.get('extra_reloads', '-')} | {raw.get('strays', '-')} |"
            )
    return out


def render_heavy(section: dict[str, Any] | None) -> list[str]:
    """The "heavy apps" section of the report."""
    if not section or not section.get("results"):
        return []
    results = {r["reloader"]: r for r in section["results"]}
    return [
        "## Heavy apps: edit to first HTTP response with the new code",
        "",
        "FastAPI with pydantic and SQLAlchemy (150 models, 40 tables, 300 routes), and a Django "
        "`startproject` site with two apps. Each edit saves one module with a new version (atomic "
        "rename, a different size each time); a client polls `GET /` (`Connection: close`, 5 ms "
        "apart) until the body shows it, and checks every body it reads: *failed* is no answer, "
        "an error status or a body that is no saved version; *stale* an older version than one "
        "already served. Ratios are to the framework's own reloader on the same edit. The "
        "server's own \"reloaded in\" figure is asyncreload's log line; *save → line* is when "
        "that line was printed, on the harness's clock, and *line → new response* how long "
        "after it the client read the new version.",
        "",
        *_import_lines(section.get("import_costs")),
        *_rows(results),
        "",
        *_targets(results),
        f"Each server's log (every line stamped with the harness's clock) and a timeline that "
        f"merges it with the saves and first new responses: `{section.get('logs', '?')}`.",
        "",
        "<details><summary>noise</summary>",
        "",
        *_noise(section["results"]),
        "",
        "</details>",
        "",
    ]
