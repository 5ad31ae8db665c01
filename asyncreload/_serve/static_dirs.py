"""Where a loaded app keeps its static files: the worker's side of live reload's asset updates.

Read off the app object and the frameworks' own settings once the app has loaded, by duck typing
and ``sys.modules`` (the worker stays stdlib-only, and a framework that was not imported is not
looked for):

- Starlette and FastAPI: every ``StaticFiles`` mounted in the app's routes, nested mounts and
  routers included (its ``directory`` and its ``packages``' ``statics``);
- Flask: the app's ``static_folder`` and each blueprint's;
- Django: ``STATICFILES_DIRS`` and each installed app's ``static/`` directory.

Each comes as a :class:`Place`: the directory, and the URL path it is served under (``""`` when
that can't be told). Directories inside the Python installation (Django's admin, packages'
bundled assets) are left out: they don't change while one works.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Place", "find"]

_DEPTH = 16
"""How deep wrappers (middleware) and nested mounts are followed."""


@dataclass(frozen=True)
class Place:
    directory: str
    url: str
    """The URL path the directory is served under, ending in "/" ("" when not known)."""


def find(app: Any) -> list[Place]:
    """The static directories of ``app`` (as the user's code gave it, before any wrapping)."""
    installed = _installation()
    found: dict[str, Place] = {}
    for place in (*_starlette(app), *_flask(app), *_django()):
        directory = os.path.realpath(place.directory)
        if directory not in found and os.path.isdir(directory) and not installed(directory):
            found[directory] = Place(directory, place.url)
    return list(found.values())


def _installation() -> Callable[[str], bool]:
    """A test for directories of the Python installation or its virtual environment (their
    paths resolved once)."""
    prefixes = tuple(
        os.path.realpath(p).rstrip(os.sep) + os.sep
        for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}
    )
    return lambda directory: (directory + os.sep).startswith(prefixes)


def _url(*parts: str) -> str:
    path = "/" + "/".join(p.strip("/") for p in parts if p.strip("/"))
    return path.rstrip("/") + "/"


# -- Starlette / FastAPI --------------------------------------------------------------------------


def _starlette(app: Any) -> Iterator[Place]:
    module = sys.modules.get("starlette.staticfiles")
    if module is None:
        return
    static_files = module.StaticFiles
    for outer in _unwrapped(app):
        yield from _mounted(outer, static_files, "", _DEPTH)


def _unwrapped(app: Any) -> Iterator[Any]:
    """``app`` and what it wraps (middleware keep the app they wrap as ``.app``)."""
    for _ in range(_DEPTH):
        if app is None:
            return
        yield app
        app = getattr(app, "app", None)


def _mounted(app: Any, static_files: Any, prefix: str, depth: int) -> Iterator[Place]:
    if depth == 0:
        return
    if isinstance(app, static_files):
        for directory in getattr(app, "all_directories", None) or [app.directory]:
            if directory is not None:
                yield Place(os.fspath(directory), _url(prefix))
        return
    routes = getattr(app, "routes", None)
    if not isinstance(routes, list):
        return
    for route in routes:
        inner = getattr(route, "app", None)
        if inner is not None and inner is not app:
            path = getattr(route, "path", "")
            path = path if isinstance(path, str) else ""
            for wrapped in _unwrapped(inner):
                yield from _mounted(wrapped, static_files, prefix + path, depth - 1)


# -- Flask ----------------------------------------------------------------------------------------


def _flask(app: Any) -> Iterator[Place]:
    module = sys.modules.get("flask")
    if module is None:
        return
    for outer in _unwrapped(app):
        if isinstance(outer, module.Flask):
            # Each static folder's URL is that of its "static" route, where the blueprint was
            # registered (its url_prefix may be given only then).
            urls = {
                rule.endpoint: _url(rule.rule.partition("<")[0])
                for rule in outer.url_map.iter_rules()
                if rule.endpoint == "static" or rule.endpoint.endswith(".static")
            }
            if outer.static_folder:
                yield Place(outer.static_folder, urls.get("static", ""))
            for name, blueprint in outer.blueprints.items():
                if blueprint.static_folder:
                    yield Place(blueprint.static_folder, urls.get(f"{name}.static", ""))
            return


# -- Django ---------------------------------------------------------------------------------------


def _django() -> Iterator[Place]:
    conf, apps_module = sys.modules.get("django.conf"), sys.modules.get("django.apps")
    if conf is None or apps_module is None or not conf.settings.configured:
        return
    settings = conf.settings
    url = getattr(settings, "STATIC_URL", None) or ""
    # STATIC_URL may be a whole URL (a CDN): then only its path is ours to match.
    url = _url(url.split("://", 1)[1].partition("/")[2] if "://" in url else url) if url else ""
    for entry in getattr(settings, "STATICFILES_DIRS", ()):
        # Either a directory or (prefix, directory).
        prefix, directory = entry if isinstance(entry, tuple | list) else ("", entry)
        yield Place(os.fspath(directory), _url(url, prefix) if url else "")
    if not apps_module.apps.ready:
        return
    for config in apps_module.apps.get_app_configs():
        yield Place(os.path.join(config.path, "static"), url)
