"""``serve``: an ASGI/WSGI app served by uvicorn workers that are swapped on changes.

``supervisor`` owns the socket and the reload (a warm standby imports the new code while the old
worker serves); ``worker_program`` is the worker, a separate program run as its own process.
"""

from .supervisor import (
    DEFAULT_RELOAD_INCLUDES,
    WATCHER_KEYS,
    ReloadStrategy,
    ServeConfig,
    ServeError,
    serve,
    serve_async,
)

# What the CLI and the package may use.
__all__ = [
    "DEFAULT_RELOAD_INCLUDES",
    "WATCHER_KEYS",
    "ReloadStrategy",
    "ServeConfig",
    "ServeError",
    "serve",
    "serve_async",
]
