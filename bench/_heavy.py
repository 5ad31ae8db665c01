"""Heavy apps: edit to the first HTTP response with the new code, when the app weighs what a
real one does (issue "Reload a heavy app in tens of milliseconds").

Two sites, each under asyncreload serve and under its own framework's reloader, in one run:

- **FastAPI** (``apps/heavy.py``): fastapi, pydantic and SQLAlchemy, 150 models, 40 tables, 300
  routes; ``uvicorn heavyapp.main:app --reload`` against ``asyncreload serve heavyapp.main:app``.
  Two kinds of edit, alternating and measured apart: ``main.py`` (the entry module) and
  ``routes.py`` (the router);
- **Django** (``apps/django_site.py``): ``startproject`` with two apps; ``manage.py runserver``
  (its autoreloader) against ``asyncreload serve benchsite.wsgi:application``; edits of
  ``blog/views.py``.

Every response is checked, not only the one the client waits for: its body names the version of
each edited module, and a response is *failed* (no answer, an error status, a body that is no
version the harness saved) or *stale* (an older version than one already served). Each server
runs under ``runners/stamp_lines.py``, so its log keeps, for every line, when it was printed on
the harness's clock; the log is kept, with a timeline that merges it with the harness's saves
and first new responses, and asyncreload's "reloaded in N ms" lines are read back for the report.

Each site's import costs (FastAPI: third-party, ``models.py``, ``routes.py``, ``main.py``;
Django: itself, ``django.setup()``, the URLconf, the WSGI handler) are measured in a bare
interpreter first, warm bytecode, so the report says what a reload must pay for each part.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._reloaders import Reloader, ReloadSettings, Versions, free_port, reloader_env, write_module
from ._runner import spawned
from ._serve import ServerDied, ask, time_left
from ._stats import MISSED
from .apps import django_site, heavy

__all__ = ["HEAVY_SERVERS", "IMPORT_STEPS", "SITES", "START", "Site", "measure_heavy"]

STAMP = Path(__file__).parent / "runners" / "stamp_lines.py"
_REQUEST_TIMEOUT = 5.0
START = "start"
"""The responses' tally before the first edit: a server that is starting refuses connections,
which is no reload's failure, so the report leaves it out."""
_IMPORT_RUNS = 3


@dataclass(frozen=True)
class Site:
    """A generated site: the files its edits rewrite, and what ``GET /`` shows for a state."""

    name: str
    label: str
    edits: tuple[tuple[str, str], ...]
    """(kind, path relative to the project), in the order each round saves them."""
    text: Callable[[str, str], str]
    """(kind, version) -> the edited file's new source."""
    served: Callable[[Mapping[str, str]], str]
    """The version in the body when each kind's file is at the given version."""
    initial: Mapping[str, str]
    requires: tuple[str, ...]


def _fastapi_text(kind: str, version: str) -> str:
    return heavy.main_text(version) if kind == "main.py" else heavy.routes_text(version)


SITES = {
    "fastapi": Site(
        "fastapi",
        "FastAPI, heavy",
        (("main.py", f"{heavy.PACKAGE}/main.py"), ("routes.py", f"{heavy.PACKAGE}/routes.py")),
        _fastapi_text,
        lambda state: f"{state['main.py']}.{state['routes.py']}",
        {"main.py": "m0", "routes.py": "r0"},
        ("fastapi", "sqlalchemy", "uvicorn"),
    ),
    "django": Site(
        "django",
        "Django",
        (("views.py", django_site.EDITED),),
        lambda _kind, version: django_site.blog_views_text(version),
        lambda state: state["views.py"],
        {"views.py": "v0"},
        ("django",),
    ),
}

_HOST = ("--host", "127.0.0.1", "--port", "{port}")
_SERVE = ("{python}", "-m", "asyncreload", "serve")
HEAVY_APP = f"{heavy.PACKAGE}.main:app"

HEAVY_SERVERS: tuple[Reloader, ...] = (
    Reloader(
        "uvicorn-reload-heavy",
        "uvicorn --reload",
        ("{python}", "-m", "uvicorn", HEAVY_APP, "--reload", *_HOST),
        app="fastapi",
        requires=SITES["fastapi"].requires,
    ),
    Reloader(
        "asyncreload-serve-heavy",
        "asyncreload serve",
        (*_SERVE, HEAVY_APP, *_HOST),
        app="fastapi",
        ours=True,
        compare_to="uvicorn-reload-heavy",
        requires=SITES["fastapi"].requires,
    ),
    Reloader(
        "django-runserver",
        "manage.py runserver",
        ("{python}", "manage.py", "runserver", "127.0.0.1:{port}"),
        app="django",
        requires=SITES["django"].requires,
    ),
    Reloader(
        "asyncreload-serve-django",
        "asyncreload serve",
        (*_SERVE, f"{django_site.PROJECT}.wsgi:application", *_HOST),
        app="django",
        ours=True,
        compare_to="django-runserver",
        requires=SITES["django"].requires,
    ),
)


# ---- the client: every response checked


@dataclass
class _Tally:
    """The responses read while one kind of edit was the latest."""

    ok: int = 0
    failed: int = 0
    stale: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class _CheckedClient:
    """Polls ``GET /`` and checks every body against the versions saved so far, in order."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, interval: float) -> None:
        self.proc, self.port, self.interval = proc, port, interval
        self.order: dict[str, int] = {}
        self.newest = -1
        """The position (in ``order``) of the newest version served so far."""
        self.tallies: dict[str, _Tally] = {}
        self.kind = START
        self.pid: int | None = None

    def expect(self, version: str, kind: str) -> None:
        """``version`` is saved now (``kind`` of edit): responses count towards ``kind``."""
        self.order.setdefault(version, len(self.order))
        self.kind = kind

    def _check(self, reply: tuple[str, int] | str) -> str | None:
        tally = self.tallies.setdefault(self.kind, _Tally())
        if isinstance(reply, str) or reply[0] not in self.order:
            reason = reply if isinstance(reply, str) else "a version never saved"
            tally.failed += 1
            tally.reasons[reason] = tally.reasons.get(reason, 0) + 1
            return None
        version, self.pid = reply
        position = self.order[version]
        if position < self.newest:
            tally.stale += 1
        else:
            tally.ok += 1
            self.newest = position
        return version

    def until(self, version: str | None, deadline: float) -> float | None:
        """When (monotonic) a response first showed ``version`` (None: any good one); None
        once ``deadline`` passes."""
        while True:
            remaining = time_left(self.proc, deadline)
            if remaining <= 0:
                return None
            served = self._check(ask(self.port, min(remaining, _REQUEST_TIMEOUT)))
            t = time.monotonic()
            if served is not None and (version is None or served == version):
                return t
            time.sleep(min(self.interval, max(0.0, deadline - t)))


# ---- one server


@dataclass
class _Edit:
    kind: str
    version: str
    t0: float
    t_new: float | None


_RELOADED = re.compile(r"asyncreload: reloaded in (\d+) ms after [\d,]+ changes?: (.*)$")
_ACCESS = re.compile(r'"GET / HTTP/1\.[01]" \d{3}')


def _stamped(log: Path) -> list[tuple[float, str]]:
    """The server's log lines, each with the time ``stamp_lines.py`` read it."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        stamp, _, text = line.partition(" ")
        try:
            out.append((float(stamp), text))
        except ValueError:
            out.append((out[-1][0] if out else 0.0, line))
    return out


def _reload_lines(lines: list[tuple[float, str]], edits: list[_Edit]) -> list[dict[str, Any]]:
    """For each edit, asyncreload's first "reloaded in N ms" line after its save (and before
    the next save): N, when the line came after the save, and how long after it the client
    read the first new response (what a handover costs as the client sees it)."""
    out: list[dict[str, Any]] = []
    for i, edit in enumerate(edits):
        end = edits[i + 1].t0 if i + 1 < len(edits) else math.inf
        found = next(
            (
                (t, m)
                for t, text in lines
                if edit.t0 <= t < end and (m := _RELOADED.search(text)) is not None
            ),
            None,
        )
        if found is not None:
            t, m = found
            answered = None if edit.t_new is None else edit.t_new - t
            out.append(
                {
                    "kind": edit.kind,
                    "server_ms": int(m[1]),
                    "logged_s": t - edit.t0,
                    "answered_s": answered,
                }
            )
    return out


def _timeline(lines: list[tuple[float, str]], edits: list[_Edit], path: Path) -> None:
    """The server's lines and the harness's saves and first new responses, in time order; the
    access log of the polling ``GET /`` folded into a count."""
    events = [(t, "server", text) for t, text in lines]
    for edit in edits:
        events.append((edit.t0, "harness", f"save {edit.kind} ({edit.version})"))
        if edit.t_new is not None:
            took = 1000 * (edit.t_new - edit.t0)
            events.append((edit.t_new, "harness", f"first response with it, {took:.0f} ms"))
    events.sort(key=lambda e: e[0])
    out, polls, last_save = [], 0, None
    for t, who, text in events:
        if who == "server" and _ACCESS.search(text):
            polls += 1
            continue
        if polls:
            out.append(f"{'':>12}  {'':>9}  ({polls} GET / logged)")
            polls = 0
        if who == "harness" and text.startswith("save "):
            last_save = t
        since = "" if last_save is None else f"+{1000 * (t - last_save):.0f} ms"
        out.append(f"{t:12.4f}  {since:>9}  {who}: {text}")
    if polls:
        out.append(f"{'':>12}  {'':>9}  ({polls} GET / logged)")
    path.write_text("\n".join(out) + "\n")


def _edits(
    client: _CheckedClient,
    site: Site,
    project: Path,
    rng: random.Random,
    settings: ReloadSettings,
) -> tuple[list[_Edit], int]:
    """``trials`` rounds of one save of each kind; and the reloads beyond one per edit."""
    state = dict(site.initial)
    versions = {kind: Versions() for kind, _ in site.edits}
    edits: list[_Edit] = []
    extra = 0
    for _ in range(settings.trials):
        for kind, path in site.edits:
            time.sleep(rng.uniform(*settings.spacing))
            served_pid = client.pid
            if client.until(None, time.monotonic() + settings.deadline) is None:
                return edits, extra
            if edits and edits[-1].t_new is not None and client.pid != served_pid:
                extra += 1  # it reloaded again after serving the last edit's version
            # m1-x, r1-x, v1-x: a different size each time, and each kind's own letter.
            state[kind] = kind[0] + versions[kind].next()[1:]
            version = site.served(state)
            client.expect(version, kind)
            t0 = write_module(project / path, site.text(kind, state[kind]))
            edits.append(_Edit(kind, version, t0, client.until(version, t0 + settings.deadline)))
            missed = [e.t_new is None for e in edits[-2:]]
            if missed == [True, True] or (len(edits) == 1 and missed == [True]):
                return edits, extra  # it doesn't reload; more edits would only cost deadlines
    return edits, extra


def _measure_one(
    reloader: Reloader,
    site: Site,
    template: Path,
    settings: ReloadSettings,
    workdir: Path,
    keep: Path,
    seed: str,
) -> dict[str, Any]:
    result: dict[str, Any] = {"reloader": reloader.name, "site": site.name}
    missing = reloader.missing()
    if missing:
        result["skipped"] = missing
        return result
    project = workdir / f"heavy-{reloader.name}"
    shutil.copytree(template, project, ignore=shutil.ignore_patterns("__pycache__"))
    log = keep / f"heavy-{reloader.name}.log"
    env = {**reloader_env(), "PYTHONUNBUFFERED": "1"}  # lines stamped as they are printed
    port = free_port()
    client: _CheckedClient | None = None
    edits: list[_Edit] = []
    try:
        t_spawn = time.monotonic()
        command = [sys.executable, str(STAMP), *reloader.command(port)]
        with spawned(command, env=env, cwd=project, log_path=log) as server:
            client = _CheckedClient(server.proc, port, settings.poll_interval)
            first = site.served(site.initial)
            client.expect(first, START)
            t_first = client.until(first, t_spawn + settings.start_deadline)
            if t_first is None:
                result["error"] = f"not serving within {settings.start_deadline:.0f} s"
                return result
            result["startup_s"] = t_first - t_spawn
            edits, result["extra_reloads"] = _edits(
                client, site, project, random.Random(seed), settings
            )
        result["strays"] = server.strays
    except ServerDied as exc:
        result["error"] = str(exc)
    finally:
        shutil.rmtree(project, ignore_errors=True)
        if client is not None:
            result["responses"] = {k: vars(t) for k, t in client.tallies.items()}
        result["edits"] = {
            kind: [MISSED if e.t_new is None else e.t_new - e.t0 for e in edits if e.kind == kind]
            for kind, _ in site.edits
        }
        lines = _stamped(log) if log.exists() else []
        result["reloads"] = _reload_lines(lines, edits)
        timeline = keep / f"heavy-{reloader.name}.timeline.txt"
        _timeline(lines, edits, timeline)
        result["log"], result["timeline"] = str(log), str(timeline)
    return result


# ---- import costs, and the sites


IMPORT_STEPS: dict[str, tuple[tuple[str, str], ...]] = {
    "fastapi": (
        ("third_party", "import fastapi, fastapi.responses, pydantic, sqlalchemy, sqlalchemy.orm"),
        ("models", f"import {heavy.PACKAGE}.models"),
        ("routes", f"import {heavy.PACKAGE}.routes"),
        ("main", f"import {heavy.PACKAGE}.main"),
    ),
    "django": (
        ("third_party", "import django, django.contrib.admin, django.db.models, django.http"),
        (
            "setup",  # settings, the app registry, every app's models, the admin's autodiscovery
            f"import os; os.environ['DJANGO_SETTINGS_MODULE'] = '{django_site.PROJECT}.settings'"
            "; django.setup()",
        ),
        ("urls", f"import {django_site.PROJECT}.urls"),  # the views, the admin's URLs
        ("wsgi", f"import {django_site.PROJECT}.wsgi"),  # the handler, the middleware
    ),
}
"""Each site's import, in steps, each timed (wall and CPU) in a fresh interpreter."""


def _import_program(steps: tuple[tuple[str, str], ...]) -> str:
    lines = ["import json, time", "t = [(time.perf_counter(), time.process_time())]"]
    for _name, statement in steps:
        lines += [statement, "t.append((time.perf_counter(), time.process_time()))"]
    names = [name for name, _ in steps]
    lines.append(
        f"print(json.dumps({{s: [b[0] - a[0], b[1] - a[1]] for s, a, b in zip({names!r}, t, "
        "t[1:])}))"
    )
    return "\n".join(lines)


def measure_import_costs(site: str, project: Path, env: dict[str, str]) -> dict[str, Any]:
    """Import time of each step of ``site``'s app in a fresh interpreter (warm bytecode):
    {step: {"wall": [s, ...], "cpu": [s, ...]}}, or {"error": ...}."""
    code = _import_program(IMPORT_STEPS[site])
    runs: list[dict[str, list[float]]] = []
    for i in range(_IMPORT_RUNS + 1):  # the first writes the bytecode and is not counted
        done = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return {"error": " ".join(done.stderr.strip().splitlines()[-1:])}
        if i:
            runs.append(json.loads(done.stdout))
    return {
        step: {"wall": [r[step][0] for r in runs], "cpu": [r[step][1] for r in runs]}
        for step in runs[0]
    }


def _write_sites(workdir: Path, sites: set[str]) -> dict[str, Path]:
    """Each site once, to be copied for each server."""
    out = {}
    if "fastapi" in sites:
        out["fastapi"] = workdir / "heavy-site-fastapi"
        out["fastapi"].mkdir()
        initial = SITES["fastapi"].initial
        heavy.write_heavy_app(out["fastapi"], main=initial["main.py"], routes=initial["routes.py"])
    if "django" in sites:
        out["django"] = workdir / "heavy-site-django"
        django_site.write_django_site(out["django"], sys.executable, reloader_env())
    return out


def measure_heavy(
    servers: list[Reloader],
    settings: ReloadSettings,
    workdir: Path,
    keep: Path,
    seed: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The heavy measurement's section of the raw results; each server's log (and its
    timeline) is written to ``keep``, which outlives the run."""
    keep.mkdir(parents=True, exist_ok=True)
    section: dict[str, Any] = {"results": [], "logs": str(keep)}
    wanted = {s.app for s in servers if s.missing() is None}
    templates = _write_sites(workdir, wanted)
    section["import_costs"] = {}
    for name, site_dir in templates.items():
        costs = measure_import_costs(name, site_dir, reloader_env())
        section["import_costs"][name] = costs
        shown = costs.get("error") or ", ".join(
            f"{step} {1000 * statistics.median(v['wall']):.0f} ms" for step, v in costs.items()
        )
        log(f"[heavy] {SITES[name].label}: import costs (wall, median of {_IMPORT_RUNS}): {shown}")
        for cache in site_dir.rglob("__pycache__"):
            shutil.rmtree(cache)  # each server starts as the others do: compiling
    for reloader in servers:
        site = SITES[reloader.app]
        log(f"[heavy] {reloader.label} ({reloader.name}, {site.label}) ...")
        t0 = time.monotonic()
        template = templates.get(site.name)
        if template is None:
            section["results"].append({"reloader": reloader.name, "skipped": reloader.missing()})
            continue
        raw = _measure_one(
            reloader, site, template, settings, workdir, keep, f"{seed}/heavy/{reloader.name}"
        )
        raw["elapsed_s"] = time.monotonic() - t0
        section["results"].append(raw)
        log(f"    {_progress(raw)} ({raw['elapsed_s']:.0f} s); log: {raw.get('log', '-')}")
    return section


def _progress(raw: dict[str, Any]) -> str:
    if "skipped" in raw:
        return f"skipped: {raw['skipped']}"
    parts = []
    for kind, samples in raw.get("edits", {}).items():
        finite = [s for s in samples if math.isfinite(s)]
        p50 = f"{1000 * statistics.median(samples):.0f} ms" if finite else "-"
        parts.append(f"{kind} p50 {p50} ({len(samples)} edits)")
    tallies = [t for kind, t in raw.get("responses", {}).items() if kind != START]
    failed = sum(t["failed"] for t in tallies)
    stale = sum(t["stale"] for t in tallies)
    parts.append(f"{failed} failed / {stale} stale")
    if "error" in raw:
        parts.append(f"error: {raw['error']}")
    return "; ".join(parts)
