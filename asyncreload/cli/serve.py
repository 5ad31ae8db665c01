"""``asyncreload serve``: the command line of the app server, with uvicorn's option names."""

from __future__ import annotations

import dataclasses
import logging
import platform
from typing import Any

import anyio
import click

from .._watch import DEFAULTS, OPTIONS, current_directory, keywords_from
from .common import (
    WATCHED_PATH,
    Number,
    cancel_on_signals,
    run_async,
    serve_watcher_options,
    setup_logging,
    verbosity_options,
)
from .pyproject import with_config

__all__ = ["serve_command"]

_SERVE_EPILOG = """\
\b
An existing uvicorn command line works after swapping the program name:
  uvicorn main:app --reload --reload-dir src
  asyncreload serve main:app --reload-dir src
--reload is accepted and always on. Every uvicorn option is accepted with
uvicorn's meaning, and so is its UVICORN_<OPTION> environment variable:
--loop, --http, --ws, --ssl-*, --header and the others marked "uvicorn's"
go to each worker's uvicorn.Config as they are, and one not given keeps
uvicorn's default. --workers is ignored, with uvicorn's warning: under
reload there is one worker.

\b
Watched by default: *.py and templates (*.html, *.jinja, *.jinja2, *.j2)
under the --reload-dir directories, and the --env-file; an edit shows on the
next request (its values re-read). --reload-exclude '*.html' takes one back.
A path that keeps reloading the app (5 reloads within 10 s: the app writes
it at start) is set aside, with one line, until something else changes.

\b
Live reload (--live-reload): each HTML page gets a <script> before its last
</body> (or </head>) that listens on /__asyncreload__/events. After a reload
the page refreshes once the new worker answers; a failed reload shows its
error over the old page instead. A stylesheet edited under a static dir is
swapped in place (no refresh: scroll and typed text stay); other static files
refresh the page; neither starts a worker. Static dirs are found from the app:
Starlette/FastAPI StaticFiles mounts, Flask static folders, Django's
STATICFILES_DIRS and app static/ dirs; --static-dir names more.

\b
Warm imports (on by default): the standby has imported the app's modules
before you save; the change's modules, and every module that imports one of
them, are dropped and imported again, the rest are kept, and each worker is
still a fresh process. Where that can't be sure, the whole app is imported
again in a fresh worker, and the log line says why: a removed module, the
env file, a C extension, a module Django's app registry holds (models,
admin, settings), a module that third-party code loaded, an import that
fails over the kept modules. A file the app reads at import (a JSON, a YAML)
counts as its module's. An app that prints at import prints when the
standby starts, not when you save. Never with --reload-strategy restart.

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


def _header(text: str) -> list[str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise click.BadParameter(f"must be NAME:VALUE, not {text!r}", param_hint="'--header'")
    return [name, value]


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import version

    # uvicorn's --version line, and ours
    click.echo(
        f"Running uvicorn {version('uvicorn')} with {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()} "
        f"(asyncreload {version('asyncreload')})"
    )
    ctx.exit()


def _uvicorn_options(f: Any) -> Any:
    """uvicorn's options that serve passes to each worker's ``uvicorn.Config`` as they are.

    Each defaults to None, "not given": the worker then gets uvicorn's own default, whatever the
    installed uvicorn's is. tests/test_serve_apps.py checks this list against uvicorn's.
    """
    options = [
        click.option("--loop", metavar="auto|asyncio|uvloop",
                     help="Event loop (uvicorn's; auto: uvloop if installed)."),
        click.option("--http", metavar="auto|h11|httptools",
                     help="HTTP implementation (uvicorn's; auto: httptools if installed)."),
        click.option("--http2", is_flag=True, default=None, help="HTTP/2 (uvicorn's)."),
        click.option("--ws", metavar="auto|none|websockets|websockets-sansio|wsproto",
                     help="WebSocket implementation (uvicorn's)."),
        click.option("--ws-max-size", type=int, metavar="BYTES", help="uvicorn's."),
        click.option("--ws-max-queue", type=int, metavar="N", help="uvicorn's."),
        click.option("--ws-ping-interval", type=float, metavar="SECONDS", help="uvicorn's."),
        click.option("--ws-ping-timeout", type=float, metavar="SECONDS", help="uvicorn's."),
        click.option("--ws-per-message-deflate", type=bool, metavar="BOOLEAN",
                     help="uvicorn's."),
        click.option("--log-config", type=click.Path(exists=True, dir_okay=False),
                     help="Logging configuration for the workers (.ini, .json, .yaml)."),
        click.option("--use-colors/--no-use-colors", default=None,
                     help="Colorized worker logs (uvicorn's)."),
        click.option("--server-header/--no-server-header", default=None,
                     help="The Server header (uvicorn's; on)."),
        click.option("--date-header/--no-date-header", default=None,
                     help="The Date header (uvicorn's; on)."),
        click.option("--header", "headers", multiple=True, metavar="NAME:VALUE",
                     help="A default response header (repeatable)."),
        click.option("--limit-concurrency", type=int, metavar="N",
                     help="Answer 503 beyond N connections or tasks (uvicorn's)."),
        click.option("--limit-max-requests", type=int, metavar="N",
                     help="A worker exits after N requests (uvicorn's)."),
        click.option("--limit-max-requests-jitter", type=int, metavar="N", help="uvicorn's."),
        click.option("--timeout-keep-alive", type=int, metavar="SECONDS",
                     help="Close idle keep-alive connections after this (uvicorn's; 5)."),
        click.option("--timeout-worker-healthcheck", type=int, metavar="SECONDS",
                     help="uvicorn's (for its own multi-worker mode)."),
        click.option("--h11-max-incomplete-event-size", type=int, metavar="BYTES",
                     help="uvicorn's."),
        click.option("--reset-contextvars", is_flag=True, default=None, help="uvicorn's."),
        click.option("--ssl-keyfile", metavar="PATH", help="TLS key file."),
        click.option("--ssl-certfile", metavar="PATH", help="TLS certificate file."),
        click.option("--ssl-keyfile-password", metavar="TEXT", help="uvicorn's."),
        click.option("--ssl-version", type=int, metavar="N", help="uvicorn's."),
        click.option("--ssl-cert-reqs", type=int, metavar="N", help="uvicorn's."),
        click.option("--ssl-ca-certs", metavar="PATH", help="uvicorn's."),
        click.option("--ssl-ciphers", metavar="TEXT", help="uvicorn's."),
        click.option("--backlog", type=int, default=2048, show_default=True,
                     help="The listening socket's backlog."),
        click.option("--workers", type=int, metavar="N",
                     help="Ignored, with uvicorn's warning: one worker under reload."),
        click.option("--version", is_flag=True, expose_value=False, is_eager=True,
                     callback=_print_version, help="Show the uvicorn version and exit."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


# uvicorn reads UVICORN_<OPTION> (UVICORN_PORT=9000, UVICORN_APP=main:app) when an option is not
# given: so does serve, so that a uvicorn set-up made of environment variables works too.
@click.command(
    name="serve",
    epilog=_SERVE_EPILOG,
    short_help="Serve an ASGI/WSGI app; reload it on change.",
    context_settings={"auto_envvar_prefix": "UVICORN"},
)
@click.argument("app", envvar="UVICORN_APP")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind to this address.")
@click.option("--port", type=int, default=8000, show_default=True, help="Bind to this port.")
@click.option("--uds", metavar="PATH", help="Bind to a Unix domain socket instead (a stale "
              "socket there is replaced; any other file is refused).")  # fmt: skip
@click.option("--fd", type=int, help="Serve on this already-open listening socket.")
@click.option("--factory", is_flag=True, help="APP is a factory: call it to get the app.")
@click.option(
    "--app-dir",
    default=".",
    show_default=True,
    metavar="DIR",
    help="Import APP from DIR (added to sys.path); also watched by default.",
)
@click.option("--env-file", metavar="PATH",
              help="Environment file for the app (python-dotenv); watched, and re-read at "
              "each reload.")  # fmt: skip
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
    type=Number("grace"),
    default=3.0,
    show_default=True,
    metavar="SECONDS",
    help="How long an old worker keeps answering requests on its open connections "
    "(with Connection: close) and finishing in-flight ones (an open stream, a WebSocket) "
    "after a reload, before it is cut off.",
)
@click.option("--reload", is_flag=True, hidden=True)  # accepted for uvicorn's sake; always on
@click.option(
    "--reload-dir",
    "reload_dirs",
    multiple=True,
    metavar="DIR",
    type=WATCHED_PATH,
    help="Watch DIR (repeatable).  [default: --app-dir]",
)
@click.option(
    "--reload-include",
    "reload_includes",
    multiple=True,
    metavar="GLOB",
    help="Also reload on files matching GLOB (repeatable); *.py, templates (*.html, *.jinja, "
    "*.jinja2, *.j2) and the --env-file always do.",
)
@click.option(
    "--reload-exclude",
    "reload_excludes",
    multiple=True,
    metavar="GLOB",
    help="Never reload on paths matching GLOB (repeatable); wins over the includes.",
)
@click.option(
    "--reload-delay",
    type=Number("reload_delay"),
    metavar="SECONDS",
    help=f"Quiet time that ends a batch of changes.  [default: {DEFAULTS.debounce:g}]",
)
@click.option(
    "--live-reload",
    is_flag=True,
    help="Refresh the browser after each reload, once the new code answers: a script is added "
    "to every HTML page the app returns (nothing else is touched). See below.",
)
@click.option(
    "--static-dir",
    "static_dirs",
    multiple=True,
    metavar="DIR",
    type=WATCHED_PATH,
    help="With --live-reload: DIR holds static files (repeatable), which update the pages "
    "without a new worker. Those of StaticFiles mounts, Flask and Django are found.",
)
@click.option(
    "--warm-imports/--no-warm-imports",
    default=True,
    show_default=True,
    help="The standby imports the app's own modules ahead of time, and a change imports again "
    "only the modules it reaches (those that import a changed one, directly or not); the "
    "log line says which. Off: each reload imports the whole app. See below.",
)
@click.option(
    "--reload-strategy",
    type=click.Choice(["overlap", "restart"]),
    default="overlap",
    show_default=True,
    help="See below.",
)
@serve_watcher_options
@_uvicorn_options
@verbosity_options
@click.pass_context
def serve_command(
    ctx: click.Context, /, app: str, verbose: int, quiet: int, **options: Any
) -> None:
    """Serve an ASGI or WSGI APP ("module:attribute") and reload it on change.

    \b
    Examples:
      asyncreload serve main:app                      FastAPI / Starlette
      asyncreload serve app:app --port 5000           Flask (served as WSGI)
      asyncreload serve mysite.wsgi:application       Django
      asyncreload serve main:app --reload-dir src --poll /mnt/share

    The listening socket is bound once and never closed during a reload, so
    no request is refused, and the old worker hands its keep-alive
    connections over, so none fails; if the new code fails to import, the
    old version keeps serving and the error is shown.
    """
    from .._serve import (
        DEFAULT_RELOAD_INCLUDES,
        ReloadStrategy,
        ServeConfig,
        serve_async,
    )

    setup_logging(verbose, quiet)
    # The app is imported from, and every relative path resolved in, the current directory:
    # gone, nothing would work (one line, exit 2, rather than a traceback at the first use).
    current_directory()
    # [tool.asyncreload]'s live-reload, static-dir, warm-imports and watcher settings; run's
    # keys are run's.
    options = with_config(ctx, options, "serve", needed=False, params={"static_dir": "static_dirs"})
    if options["static_dirs"] and not options["live_reload"]:
        logging.getLogger("asyncreload.serve").warning(
            "--static-dir is ignored without --live-reload (static files don't reload the app)"
        )
    del options["reload"]  # uvicorn's flag, accepted; reloading is what serve does
    workers = options.pop("workers")
    if workers is not None and workers > 1:
        # uvicorn's own words, and its behaviour: under reload there is one worker
        logging.getLogger("asyncreload.serve").warning(
            '"workers" flag is ignored when reloading is enabled.'
        )
    options["headers"] = [_header(h) for h in options["headers"]]
    served = [o for o in OPTIONS if o.serve]
    watcher = keywords_from({o.name: options.pop(o.name) for o in served}, served)
    includes = (*DEFAULT_RELOAD_INCLUDES, *options.pop("reload_includes"))
    strategy = ReloadStrategy(options.pop("reload_strategy"))
    fields = {f.name for f in dataclasses.fields(ServeConfig)}
    # The rest are uvicorn's options for the workers; those not given keep uvicorn's defaults.
    passed = {k: options.pop(k) for k in list(options) if k not in fields}
    config = ServeConfig(
        app=app,
        reload_includes=includes,
        strategy=strategy,
        watcher=watcher,
        uvicorn={k: v for k, v in passed.items() if v not in (None, [])},
        **options,
    )
    config.check()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(cancel_on_signals, tg.cancel_scope)
            await serve_async(config)

    run_async(main)
