"""What the supervisor of ``asyncreload serve`` and each of its workers say to each other: one
JSON object per line each way, each with an ``op`` (framed by ``asyncreload._wire``).

::

    supervisor -> worker   {"op": "hello", "preload": ["sqlalchemy", ...], "user": [...],
                            "spec": {...}}
                           (first: the third-party modules to import while it waits; with
                           warm imports, the app's own modules too, in the order the serving
                           worker loaded them, and the spec to import them by)
                           {"op": "go", "spec": {...}, "changed": ["/app/main.py", ...]}
                           (import the app and serve it; spec: see ServeConfig.worker_spec)
                           {"op": "stop", "handover": true}
                           (stop accepting, drain, shut down; handover: a new worker serves
                           now, so answer each open connection's next request with
                           "Connection: close")
                           {"op": "broken", "error": "..."}
                           (to the serving worker, with live reload: the new code failed to
                           load; show the browsers its short traceback)
                           {"op": "assets", "kind": "css"}
                           (to the serving worker, with live reload: static files changed;
                           "css": only stylesheets, which the pages swap in place; "page":
                           others, for which the pages reload)
    worker -> supervisor   {"op": "wrote", "path": "..."}
                           (as it happens: a file the app's own modules opened for writing
                           as a standby imported them; its change is the standby's doing,
                           which the loop guard must count before the change comes)
                           {"op": "standby", "pid": N}   (warm, waiting for "go")
                           {"op": "stale", "names": [...], "reason": "..."}
                           (it can't serve "changed" from what it has loaded, and exits.
                           names: third-party modules it preloaded had loaded these, which
                           changed: a worker that preloads nothing is started instead.
                           reason: why its warm imports can't be kept (a removed module, a
                           module Django's registry holds): a worker that preloads only the
                           third-party modules is started instead)
                           {"op": "ready", "pid": N, "at": T, "again": [...] | null}
                           (lifespan startup done: it serves; T: its wall clock then, before
                           it answered any request; again: with warm imports, the app's
                           modules it imported again, null: it imported all of them)
                           {"op": "modules", "names": [...], "user": [...]}
                           (the third-party modules the app imported: the next "preload"; and
                           the app's own, in load order: the next "user". Sent when the
                           worker is ready, and again when the app has imported more, as
                           Django does at its first request)
                           {"op": "static", "dirs": ["/app/static", ...]}
                           (with live reload: the app's static directories, found from its
                           framework; changes there update the pages without a reload)
                           {"op": "failed", "error": "..."}
                           (the app did not import or start; a short traceback)

The supervisor's end of file is the worker's "stop" without a hand-over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

# supervisor -> worker
HELLO: Final = "hello"
GO: Final = "go"
STOP: Final = "stop"
BROKEN: Final = "broken"
ASSETS: Final = "assets"

# worker -> supervisor
WROTE: Final = "wrote"
STANDBY: Final = "standby"
STALE: Final = "stale"
READY: Final = "ready"
MODULES: Final = "modules"
STATIC: Final = "static"
FAILED: Final = "failed"


def hello(
    preload: Iterable[str], user: Iterable[str] = (), spec: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {"op": HELLO, "preload": list(preload), "user": list(user), "spec": spec}


def go(spec: Mapping[str, Any], changed: Iterable[str] = ()) -> dict[str, Any]:
    return {"op": GO, "spec": dict(spec), "changed": list(changed)}


def stop(*, handover: bool) -> dict[str, Any]:
    return {"op": STOP, "handover": handover}


def broken(error: str) -> dict[str, Any]:
    return {"op": BROKEN, "error": error}


def assets(kind: str) -> dict[str, Any]:
    return {"op": ASSETS, "kind": kind}


def wrote(path: str) -> dict[str, Any]:
    return {"op": WROTE, "path": path}


def standby(pid: int) -> dict[str, Any]:
    return {"op": STANDBY, "pid": pid}


def stale(names: Iterable[str] = (), reason: str = "") -> dict[str, Any]:
    return {"op": STALE, "names": list(names), "reason": reason}


def ready(pid: int, at: float, again: Iterable[str] | None = None) -> dict[str, Any]:
    return {"op": READY, "pid": pid, "at": at, "again": None if again is None else list(again)}


def modules(names: Iterable[str], user: Iterable[str] = ()) -> dict[str, Any]:
    return {"op": MODULES, "names": list(names), "user": list(user)}


def static(dirs: Iterable[str]) -> dict[str, Any]:
    return {"op": STATIC, "dirs": list(dirs)}


def failed(error: str) -> dict[str, Any]:
    return {"op": FAILED, "error": error}
