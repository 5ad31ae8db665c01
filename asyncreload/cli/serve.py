"""``asyncreload serve``: the command line of the app server, with uvicorn's option names."""

from __future__ import annotations

from typing import Any

import anyio
import click

from ._cli_common import cancel_on_signals, run_async, setup_logging, verbosity_options

__all__ = ["serve_command"]

_SERVE_EPILOG = """\
\b
An existing uvicorn command line works after swapping the program name:
  uvicorn main:app --reload --reload-dir src
  asyncreload serve main:app --reload-dir src
--reload is accepted and always on. Not supported under reload, as in
uvicorn: --workers.

\b
Reload strategies:
  overlap  (default) the new code is imported in a fresh worker while the
           old one keeps serving; the old one is stopped once the new one
           is ready. A broken edit never takes the app down.
  restart  stop the old worker first, then start the new one. Use it for
           apps that can't run two copies at once: ones that bind a second
           port of their own, hold an exclusive lock, or run a scheduler
           that must not fire twice.
"""


@click.command(name="serve", epilog=_SERVE_EPILOG)
@click.argument("app")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind to this address.")
@click.option("--port", type=int, default=8000, show_default=True, help="Bind to this port.")
@click.option("--uds", metavar="PATH", help="Bind to a Unix domain socket instead.")
@click.option("--fd", type=int, help="Serve on this already-open listening socket.")
@click.option("--factory", is_flag=True, help="APP is a factory: call it to get the app.")
@click.option(
    "--app-dir",
    default=".",
    show_default=True,
    metavar="DIR",
    help="Import APP from DIR (added to sys.path); also watched by default.",
)
@click.option("--env-file", metavar="PATH", help="Environment file for the app (python-dotenv).")
@click.option(
    "--interface",
    type=click.Choice(["auto", "asgi3", "asgi2", "wsgi"]),
    default="auto",
    show_default=True,
    help="auto tells WSGI apps (Flask, Django) from ASGI ones.",
)
@click.option(
    "--lifespan",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="ASGI lifespan events.",
)
@click.option("--root-path", default="", help="ASGI root_path, for an app behind a path prefix.")
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=True,
    show_default=True,
    help="Trust X-Forwarded-Proto/For from --forwarded-allow-ips.",
)
@click.option("--forwarded-allow-ips", metavar="IPS", help="Proxies to trust (uvicorn's).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug",
              "trace"]), help="uvicorn's log level in the workers.")  # fmt: skip
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.option(
    "--timeout-graceful-shutdown",
    type=float,
    default=3.0,
    show_default=True,
    metavar="SECONDS",
    help="How long an old worker may finish in-flight requests (an open stream, "
    "a WebSocket) before it is killed.",
)
@click.option("--reload", is_flag=True, hidden=True)  # accepted for uvicorn's sake; always on
@click.option(
    "--reload-dir",
    "reload_dirs",
    multiple=True,
    metavar="DIR",
    type=click.Path(),
    help="Watch DIR (repeatable).  [default: --app-dir]",
)
@click.option(
    "--reload-include",
    "reload_includes",
    multiple=True,
    metavar="GLOB",
    help="Also reload on files matching GLOB (repeatable); *.py always does.",
)
@click.option(
    "--reload-exclude",
    "reload_excludes",
    multiple=True,
    metavar="GLOB",
    help="Never reload on paths matching GLOB (repeatable).",
)
@click.option(
    "--reload-delay",
    type=float,
    metavar="SECONDS",
    help="Quiet time that ends a batch of changes.  [default: 0.02]",
)
@click.option(
    "--reload-strategy",
    type=click.Choice(["overlap", "restart"]),
    default="overlap",
    show_default=True,
    help="See below.",
)
@click.option(
    "--poll",
    multiple=True,
    metavar="PATH",
    type=click.Path(),
    help="Stat-poll PATH (repeatable), as for 'watch'.",
)
@click.option(
    "--events",
    multiple=True,
    metavar="PATH",
    type=click.Path(),
    help="Kernel events for PATH (repeatable), as for 'watch'.",
)
@click.option("--force-polling", is_flag=True, default=None, help="Stat-poll everything.")
@click.option("--poll-interval", type=float, metavar="SECONDS", help="As for 'watch'.")
@click.option("--poll-cpu", type=float, metavar="PERCENT", help="As for 'watch'.")
@verbosity_options
def serve_command(app: str, verbose: int, quiet: int, **options: Any) -> None:
    """Serve an ASGI or WSGI APP ("module:attribute") and reload it on change.

    \b
    Examples:
      asyncreload serve main:app                      FastAPI / Starlette
      asyncreload serve app:app --port 5000           Flask (served as WSGI)
      asyncreload serve mysite.wsgi:application       Django
      asyncreload serve main:app --reload-dir src --poll /mnt/share

    The listening socket is bound once and never closed during a reload, so
    no request is refused; if the new code fails to import, the old version
    keeps serving and the error is shown.
    """
    from ._serve import WATCHER_KEYS, ReloadStrategy, ServeConfig, serve_async

    setup_logging(verbose, quiet)
    del options["reload"]  # uvicorn's flag, accepted; reloading is what serve does
    watcher = {k: options.pop(k) for k in WATCHER_KEYS if k in options}
    config = ServeConfig(
        app=app,
        reload_includes=("*.py", *options.pop("reload_includes")),
        strategy=ReloadStrategy(options.pop("reload_strategy")),
        watcher={k: v for k, v in watcher.items() if v not in (None, ())},
        **options,
    )
    config.check()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_on_signals, tg.cancel_scope)
            await serve_async(config)

    run_async(main)
