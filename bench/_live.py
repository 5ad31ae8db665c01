"""Live reload in a real browser: edit to the page showing it, and what the script costs.

A FastAPI site (``tests/sites.py``'s ``main.py``, with a Jinja template and a stylesheet under
``static/``) served by ``asyncreload serve --live-reload``, one headless
Chromium tab on it (``tests/browser.py``'s driver). For each kind of edit, ``trials`` saves
(random pauses between): then the tab is asked, every 5 ms over the DevTools protocol, until it
shows the edit: the title for the ``.py`` and the template (each a new page, from a new worker),
the heading's computed colour for the stylesheet (swapped in place). Latency: save to seen. The
page counts its loads (``sessionStorage``), so a refresh too many, or one where there should be
none, is counted as well.

Then the cost of the script and its middleware on every response: the same site under
``asyncreload serve`` with and without ``--live-reload``, and under plain ``uvicorn`` (no
reload) for reference: ``requests`` GETs of the HTML page and of a JSON endpoint, one after
another on one keep-alive connection, after a warm-up; p50 and p95 of each.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# The tests' site (tests/sites.py), as the benchmark runs from the repository's root.
from tests.sites import FASTAPI_SITE

from ._reloaders import ReloadSettings, free_port, reloader_env, write_module
from ._runner import spawned
from ._stats import MISSED, percentile

__all__ = ["measure_live", "render_live"]

EDITS = ("py", "template", "css")
REQUESTS = 2_000
WARMUP = 200
ASK_EVERY = 0.005


TEMPLATE = """\
<!doctype html><html><head><title>{{{{ version }}}} {heading}</title>
<link rel="stylesheet" href="/static/site.css"></head><body>
<script>sessionStorage.loads = Number(sessionStorage.loads || 0) + 1</script>
<h1>{heading}</h1><p>{filler}</p></body></html>
"""
FILLER = "A paragraph of an ordinary page. " * 60

LOADED_TITLE = "document.readyState === 'complete' ? document.title : null"
COLOUR = "getComputedStyle(document.querySelector('h1')).color"


def _missing() -> str | None:
    try:
        from tests.browser import chromium
    except ImportError as e:  # websockets, from the test extra
        return f"the browser driver can't be imported: {e}"
    for module in ("fastapi", "jinja2"):
        with contextlib.suppress(ImportError):
            __import__(module)
            continue
        return f"{module} is not installed"
    if chromium() is None:
        return "chromium is not installed (apt-get install chromium)"
    return None


def _write_site(project: Path) -> None:
    (project / "static").mkdir(parents=True)
    (project / "templates").mkdir()
    write_module(project / "main.py", FASTAPI_SITE.format(version="v0"))
    write_module(project / "templates/page.html", TEMPLATE.format(heading="h0", filler=FILLER))
    write_module(project / "static/site.css", "h1 { color: rgb(0, 0, 0) }\n")


def _serving(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return True
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    return False


def _until(page: Any, expression: str, expected: Any, deadline: float) -> float | None:
    """When (monotonic) ``expression`` first read ``expected`` in the tab; None past deadline."""
    while True:
        if page.evaluate(expression) == expected:
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(ASK_EVERY)


def _edit_trials(
    page: Any, project: Path, settings: ReloadSettings, rng: random.Random
) -> dict[str, Any]:
    version, heading, loads = "v0", "h0", 1
    found: dict[str, Any] = {"latency": {e: [] for e in EDITS}, "wrong_loads": 0}
    for n in range(1, settings.trials + 1):
        for kind in EDITS:
            time.sleep(rng.uniform(*settings.spacing))
            if kind == "py":
                version = f"v{n}"
                t0 = write_module(project / "main.py", FASTAPI_SITE.format(version=version))
                seen = _until(page, LOADED_TITLE, f"{version} {heading}", t0 + settings.deadline)
                loads += 1
            elif kind == "template":
                heading = f"h{n}"
                text = TEMPLATE.format(heading=heading, filler=FILLER)
                t0 = write_module(project / "templates/page.html", text)
                seen = _until(page, LOADED_TITLE, f"{version} {heading}", t0 + settings.deadline)
                loads += 1
            else:
                colour = f"rgb({n}, 0, 0)"
                t0 = write_module(project / "static/site.css", f"h1 {{ color: {colour} }}\n")
                seen = _until(page, COLOUR, colour, t0 + settings.deadline)
            found["latency"][kind].append(MISSED if seen is None else seen - t0)
            if seen is None:
                return found
            counted = page.evaluate("Number(sessionStorage.loads)")
            if counted != loads:
                found["wrong_loads"] += 1
                loads = counted
    return found


def _response_times(port: int, path: str, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times: list[float] = []
    try:
        for i in range(WARMUP + count):
            t0 = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if i >= WARMUP:
                times.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return times


def _body(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


SERVERS = {
    "asyncreload serve --live-reload": ("-m", "asyncreload", "serve", "main:app", "--live-reload"),
    "asyncreload serve": ("-m", "asyncreload", "serve", "main:app"),
    "uvicorn (no reload)": ("-m", "uvicorn", "main:app"),
}


def measure_live(
    settings: ReloadSettings, workdir: Path, logdir: Path, seed: str
) -> dict[str, Any]:
    """The live reload figures; ``skipped`` or ``error`` says why some are missing."""
    missing = _missing()
    if missing:
        return {"skipped": missing}
    from tests.browser import Browser

    project = workdir / "live-site"
    result: dict[str, Any] = {}
    try:
        _write_site(project)
        port = free_port()
        command = [sys.executable, *SERVERS["asyncreload serve --live-reload"]]
        command += ["--port", str(port), "--no-access-log"]
        env = reloader_env()
        with spawned(command, env=env, cwd=project, log_path=logdir / "live.log"):
            if not _serving(port, settings.start_deadline):
                return {"error": f"not serving within {settings.start_deadline:.0f} s"}
            browser = Browser(workdir / "chromium-profile")
            try:
                page = browser.page()
                try:
                    page.open(f"http://127.0.0.1:{port}/")
                    if _until(page, LOADED_TITLE, "v0 h0", time.monotonic() + 30) is None:
                        return {"error": "the page did not load in the browser"}
                    result.update(_edit_trials(page, project, settings, random.Random(seed)))
                finally:
                    page.close()
            finally:
                browser.close()
        result["responses"] = {}
        bodies = {}
        for name, args in SERVERS.items():
            port = free_port()
            command = [sys.executable, *args, "--port", str(port), "--no-access-log"]
            log_path = logdir / f"live-{name.split()[0]}-{len(result['responses'])}.log"
            with spawned(command, env=env, cwd=project, log_path=log_path):
                if not _serving(port, settings.start_deadline):
                    result["responses"][name] = {"error": "not serving"}
                    continue
                result["responses"][name] = {
                    "page": _response_times(port, "/", REQUESTS),
                    "json": _response_times(port, "/api", REQUESTS),
                }
                bodies[name] = _body(port, "/api")
        result["json_unchanged"] = len(set(bodies.values())) == 1
    finally:
        shutil.rmtree(project, ignore_errors=True)
    return result


# -- the report ---------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "missed" if math.isinf(value) else f"{value * 1000:.0f} ms"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e6:,.0f} µs"


def render_live(section: dict[str, Any]) -> list[str]:
    out = ["## Live reload in a browser (`serve --live-reload`, headless Chromium)", ""]
    if "skipped" in section or "error" in section:
        return [*out, f"not measured: {section.get('skipped') or section.get('error')}", ""]
    labels = {"py": "`main.py` (new worker, page refresh)",
              "template": "template (new worker, page refresh)",
              "css": "stylesheet (swapped in place, no refresh)"}  # fmt: skip
    out += ["| edit | n | p50 | p95 | min | max |", "|---|---|---|---|---|---|"]
    for kind in EDITS:
        samples = section["latency"].get(kind, [])
        finite = [s for s in samples if math.isfinite(s)]
        out.append(
            f"| {labels[kind]} | {len(samples)} | {_ms(percentile(samples, 50))} | "
            f"{_ms(percentile(samples, 95))} | {_ms(min(finite) if finite else None)} | "
            f"{_ms(max(samples) if samples else None)} |"
        )
    out += ["", f"Save to the tab showing it. Page loads other than one per code or template "
            f"edit and none per stylesheet edit: {section['wrong_loads']}.", ""]  # fmt: skip
    responses = section.get("responses", {})
    base = responses.get("asyncreload serve", {}).get("page")
    base_p50 = percentile(base, 50) if base else None
    out += [
        f"Response time, {REQUESTS:,} sequential GETs on one keep-alive connection after "
        f"{WARMUP} to warm up (the page: {len(TEMPLATE) + len(FILLER):,} bytes of HTML):",
        "",
        "| server | page p50 | page p95 | JSON p50 | JSON p95 | page p50 vs `serve` |",
        "|---|---|---|---|---|---|",
    ]
    for name, figures in responses.items():
        if "error" in figures:
            out.append(f"| {name} | {figures['error']} | | | | |")
            continue
        p50 = percentile(figures["page"], 50)
        ratio = f"{p50 / base_p50:.2f}x" if p50 and base_p50 else "-"
        out.append(
            f"| {name} | {_us(p50)} | {_us(percentile(figures['page'], 95))} | "
            f"{_us(percentile(figures['json'], 50))} | {_us(percentile(figures['json'], 95))} | "
            f"{ratio} |"
        )
    same = "byte for byte the same" if section.get("json_unchanged") else "NOT the same"
    out += ["", f"The JSON body under the three servers: {same}.", ""]
    return out
