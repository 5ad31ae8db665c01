"""Edit to the first HTTP response with the new code, for each server that reloads an app.

The app's body is its version and the serving process's pid (``apps/asgi_app.py``,
``apps/flask_app.py``). A client on 127.0.0.1 sends ``GET /`` with ``Connection: close`` (a new
connection each time, as a browser's reload after a pause would), pausing ``poll_interval``
between requests, until the body shows the new version. For each server, in a fresh project:

1. start it on a free port and poll until it serves ``v0``;
2. **edits**: save a new version of the app module (size-changing, atomic rename), poll until
   a response shows it; then a random pause before the next;
3. **same-size edit**: as for the restarters (see ``_restart.same_size_edit``): does the
   reloaded app serve the new code, or the old one from stale bytecode? "Reloaded" is a response
   from another pid;
4. stop the server's process group, and anything it left behind.

Every wait polls with a deadline; the only timed pauses space the edits (and the requests).
"""

from __future__ import annotations

import contextlib
import http.client
import math
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._reloaders import (
    Reloader,
    ReloadSettings,
    Versions,
    free_port,
    reloader_env,
    write_module,
    write_project,
)
from ._restart import same_size_edit
from ._runner import Event, spawned
from ._stats import MISSED

__all__ = ["ServerDied", "ask", "measure_serve", "time_left"]

_REQUEST_TIMEOUT = 5.0
"""At most this long for one request (a server that accepted but does not answer)."""


class ServerDied(RuntimeError):
    """The server exited while the client was waiting for it."""


def time_left(proc: subprocess.Popen[bytes], deadline: float) -> float:
    """Seconds until ``deadline`` (monotonic) for a client of ``proc``'s server; ServerDied
    once the server has exited."""
    if proc.poll() is not None:
        raise ServerDied(f"the server exited with status {proc.returncode}")
    return deadline - time.monotonic()


def ask(port: int, timeout: float) -> tuple[str, int] | str:
    """(version, pid) from one ``GET /`` on a new connection, or why there is none."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()
    if response.status != 200:
        return f"status {response.status}"
    version, _, pid = body.partition(" ")
    return (version, int(pid)) if pid.strip().isdigit() else "not a version"


def _get(port: int, timeout: float) -> tuple[str, int] | None:
    """(version, pid) from one ``GET /`` on a new connection; None if there was no answer."""
    reply = ask(port, timeout)
    return None if isinstance(reply, str) else reply


class _Client:
    """Polls the server until a response matches, with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, interval: float) -> None:
        self.proc, self.port, self.interval = proc, port, interval
        self.requests = 0

    def until(self, match: Callable[[str, int], bool], deadline: float) -> Event | None:
        """The first response that matches, as an event (``t``: when it was read, ``version``,
        ``pid``); None once ``deadline`` (monotonic) passes."""
        while True:
            remaining = time_left(self.proc, deadline)
            if remaining <= 0:
                return None
            reply = _get(self.port, min(remaining, _REQUEST_TIMEOUT))
            t = time.monotonic()
            self.requests += 1
            if reply is not None and match(*reply):
                return {"ev": "response", "t": t, "version": reply[0], "pid": reply[1]}
            time.sleep(min(self.interval, max(0.0, deadline - t)))


def _serves(version: str) -> Callable[[str, int], bool]:
    return lambda served, _pid: served == version


def _edit_trials(
    client: _Client,
    reloader: Reloader,
    project: Path,
    versions: Versions,
    rng: random.Random,
    settings: ReloadSettings,
) -> tuple[list[float], int]:
    """Latency (seconds, or MISSED) from each save to the first response with its version; and
    how many times the serving pid changed more than once per edit (extra reloads)."""
    samples: list[float] = []
    extra = 0
    pid: int | None = None
    time.sleep(reloader.settle)
    for _ in range(settings.trials):
        time.sleep(rng.uniform(*settings.spacing))
        before = client.until(lambda _v, _p: True, time.monotonic() + settings.deadline)
        if pid is not None and before is not None and before["pid"] != pid:
            extra += 1  # it reloaded again after serving the last edit's version
        version = versions.next()
        t0 = write_module(project / reloader.edits, reloader.text(version))
        event = client.until(_serves(version), t0 + settings.deadline)
        samples.append(MISSED if event is None else event["t"] - t0)
        pid = None if event is None else event["pid"]
        if samples[-2:] == [MISSED, MISSED] or samples == [MISSED]:
            break
    return samples, extra


def _phases(
    client: _Client,
    reloader: Reloader,
    project: Path,
    rng: random.Random,
    settings: ReloadSettings,
    result: dict[str, Any],
) -> None:
    versions = Versions()
    result["edits"], result["extra_reloads"] = _edit_trials(
        client, reloader, project, versions, rng, settings
    )
    if not any(math.isfinite(s) for s in result["edits"]):
        return
    time.sleep(rng.uniform(*settings.spacing))
    result["same_size"] = same_size_edit(
        lambda version, deadline: client.until(_serves(version), deadline),
        lambda first, deadline: client.until(lambda _v, p: p != first["pid"], deadline),
        project / reloader.edits,
        reloader.text,
        versions,
        settings.deadline,
    )


def measure_serve(
    reloader: Reloader, settings: ReloadSettings, workdir: Path, logdir: Path, seed: str
) -> dict[str, Any]:
    """All figures for one server; ``error`` says why some are missing."""
    result: dict[str, Any] = {"reloader": reloader.name}
    missing = reloader.missing()
    if missing:
        result["skipped"] = missing
        return result
    project = workdir / f"serve-{reloader.name}"
    log_path = logdir / f"serve-{reloader.name}.log"
    client: _Client | None = None
    try:
        write_project(project, tree_files=0, seed=seed)
        port = free_port()
        t_spawn = time.monotonic()
        with spawned(
            reloader.command(port), env=reloader_env(), cwd=project, log_path=log_path
        ) as server:
            client = _Client(server.proc, port, settings.poll_interval)
            first = client.until(_serves("v0"), t_spawn + settings.start_deadline)
            if first is None:
                result["error"] = f"not serving within {settings.start_deadline:.0f} s"
                return result
            result["startup_s"] = first["t"] - t_spawn
            _phases(client, reloader, project, random.Random(seed), settings, result)
        result["strays"] = server.strays
    except ServerDied as exc:
        result["error"] = f"{exc}:\n{_tail(log_path)}"
    finally:
        if client is not None:
            result["requests"] = client.requests
        shutil.rmtree(project, ignore_errors=True)
    return result


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
