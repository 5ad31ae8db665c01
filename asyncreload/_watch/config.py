"""The one place where defaults, environment variables and arguments become settings.

Precedence: an explicit argument, then the environment, then the default. The environment
variables are :data:`ENVIRONMENT` (the CLI's ``--help`` and README list the same); the numbers'
ranges and units are :data:`QUANTITIES`, checked by one rule wherever a number comes from.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from .._exceptions import ConfigError

__all__ = [
    "BACKEND_VAR",
    "DEFAULTS",
    "ENVIRONMENT",
    "QUANTITIES",
    "EventsBackend",
    "Quantity",
    "WatchSettings",
    "resolve",
]

EventsBackend = Literal["inotify", "watchfiles"]
"""What reads the kernel's events: our own inotify reader (Linux), or watchfiles' Rust backend."""

_EVENTS_BACKENDS: dict[str, EventsBackend] = {"inotify": "inotify", "watchfiles": "watchfiles"}
_LINUX = sys.platform.startswith("linux")

BACKEND_VAR = "ASYNCRELOAD_BACKEND"
"""The event loop the CLI runs on (the library runs on the caller's)."""

ENVIRONMENT: dict[str, str] = {
    "ASYNCRELOAD_FORCE_POLLING": "1 (or true/yes): poll everything",
    "ASYNCRELOAD_POLL": "PATH:PATH: paths to poll (os.pathsep between them)",
    "ASYNCRELOAD_POLL_INTERVAL": "SECONDS between the starts of two sweeps",
    "ASYNCRELOAD_POLL_CPU": "PERCENT of one core the sweeps may use",
    "ASYNCRELOAD_DEBOUNCE": "MS of quiet that end a batch",
    "ASYNCRELOAD_EVENTS_BACKEND": "inotify|watchfiles: what reads kernel events",
    BACKEND_VAR: "asyncio|trio: the CLI's event loop",
}
"""Every environment variable asyncreload reads, with what its value means: the one list that
``--help``, this module and the README's test agree with. An option given wins over each."""


@dataclass(frozen=True)
class Quantity:
    """A number's unit and range: finite always (NaN and infinity mean nothing as a time)."""

    unit: str
    zero_ok: bool = False
    maximum: float | None = None

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value``, in the unit it was given in; None if nothing.

        >>> Quantity("milliseconds", zero_ok=True).problem(-5)
        'must be a non-negative number of milliseconds, not -5'
        >>> Quantity("seconds").problem(float("nan"))
        'must be a positive number of seconds, not nan'
        """
        too_big = self.maximum is not None and value > self.maximum
        if math.isfinite(value) and value >= 0 and (value > 0 or self.zero_ok) and not too_big:
            return None
        if self.maximum is not None:
            low = "at least 0" if self.zero_ok else "above 0"
            return (
                f"must be a number of {self.unit}, {low} and up to {self.maximum:g}, not {value:g}"
            )
        sign = "non-negative" if self.zero_ok else "positive"
        return f"must be a {sign} number of {self.unit}, not {value:g}"

    def check(self, name: str, value: float) -> float:
        """``value``, or :class:`ConfigError` naming ``name`` (an option, variable or key)."""
        problem = self.problem(value)
        if problem is not None:
            raise ConfigError(f"{name} {problem}")
        return value


QUANTITIES: dict[str, Quantity] = {
    "poll_interval": Quantity("seconds"),
    "poll_cpu": Quantity("percent of one core", maximum=100),
    "debounce": Quantity("milliseconds", zero_ok=True),
    "max_wait": Quantity("milliseconds"),
    "grace": Quantity("seconds", zero_ok=True),
    "reload_delay": Quantity("seconds", zero_ok=True),
}
"""The numbers a user types (options, ``ASYNCRELOAD_*``, ``[tool.asyncreload]``), in the units
they are typed in: the CLI's option names, whose ``_`` are ``-`` on the command line."""

_SECONDS = {"debounce": Quantity("seconds", zero_ok=True), "max_wait": Quantity("seconds")}
"""The library's arguments are all seconds."""


@dataclass(frozen=True)
class WatchSettings:
    """Everything the watcher needs to know, resolved and checked."""

    force_polling: bool = False
    poll: tuple[str, ...] = ()
    env_poll: tuple[str, ...] = ()
    """Paths to poll from ``ASYNCRELOAD_POLL`` (kept apart to name the source in errors)."""
    events: tuple[str, ...] = ()
    poll_interval: float = 0.3
    """Seconds from the start of one sweep to the start of the next (the pause after a sweep
    is never shorter than the sweep itself)."""
    poll_cpu: float | None = None
    """Percent of one core the sweeps may use; None: no limit beyond sweeping half the time."""
    debounce: float = 0.02
    """Seconds of quiet that end a batch. Short: an editor's save is a few events within a
    millisecond or two, and a `git checkout` writes faster still."""
    max_wait: float = 1.0
    """Seconds after a batch's first change that it is handed out even if changes keep coming."""
    stat_workers: int = 8
    """Threads that share a sweep of a network or FUSE file system (local disks use one)."""
    events_backend: EventsBackend = "inotify" if _LINUX else "watchfiles"
    """The native reader waits on inotify's descriptor and does nothing while nothing happens;
    watchfiles' thread wakes every few milliseconds, but works off Linux too."""


DEFAULTS = WatchSettings()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env_bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: expected 1/0, true/false, yes/no")


def _env_number(env: Mapping[str, str], name: str, setting: str) -> float | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
    return QUANTITIES[setting].check(name, value)


def _events_backend(env: Mapping[str, str], name: str) -> EventsBackend | None:
    raw = env.get(name)
    value = (raw or "").strip().lower()
    if not value:
        return None
    backend = _EVENTS_BACKENDS.get(value)
    if backend is None:
        raise ConfigError(f"{name}={raw!r}: expected inotify or watchfiles")
    if backend == "inotify" and not _LINUX:
        raise ConfigError(f"{name}={raw!r}: inotify is Linux's; use watchfiles here")
    return backend


def _argument(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    return _SECONDS.get(name, QUANTITIES[name]).check(name.replace("_", " "), value)


def resolve(
    *,
    force_polling: bool | None = None,
    poll: Iterable[str] = (),
    events: Iterable[str] = (),
    poll_interval: float | None = None,
    poll_cpu: float | None = None,
    debounce: float | None = None,
    max_wait: float | None = None,
    env: Mapping[str, str] | None = None,
) -> WatchSettings:
    """Settings from arguments (None: not given), the environment, then the defaults.

    >>> s = resolve(env={"ASYNCRELOAD_FORCE_POLLING": "yes", "ASYNCRELOAD_DEBOUNCE": "80"})
    >>> s.force_polling, s.debounce, s.poll_interval
    (True, 0.08, 0.3)
    >>> resolve(env={"ASYNCRELOAD_EVENTS_BACKEND": "watchfiles"}).events_backend
    'watchfiles'
    """
    env = os.environ if env is None else env
    if force_polling is None:
        force_polling = _env_bool(env, "ASYNCRELOAD_FORCE_POLLING") or False
    env_poll = [p for p in env.get("ASYNCRELOAD_POLL", "").split(os.pathsep) if p]
    if poll_interval is None:
        poll_interval = _env_number(env, "ASYNCRELOAD_POLL_INTERVAL", "poll_interval")
    if poll_cpu is None:
        poll_cpu = _env_number(env, "ASYNCRELOAD_POLL_CPU", "poll_cpu")
    if debounce is None:
        debounce_ms = _env_number(env, "ASYNCRELOAD_DEBOUNCE", "debounce")
        debounce = None if debounce_ms is None else debounce_ms / 1000
    settings = WatchSettings(
        force_polling=force_polling,
        poll=tuple(poll),
        env_poll=tuple(env_poll),
        events=tuple(events),
        poll_interval=_argument("poll_interval", poll_interval, DEFAULTS.poll_interval),
        poll_cpu=None if poll_cpu is None else _argument("poll_cpu", poll_cpu, 0),
        debounce=_argument("debounce", debounce, DEFAULTS.debounce),
        max_wait=_argument("max_wait", max_wait, DEFAULTS.max_wait),
        events_backend=(
            _events_backend(env, "ASYNCRELOAD_EVENTS_BACKEND") or DEFAULTS.events_backend
        ),
    )
    if settings.max_wait < settings.debounce:
        raise ConfigError(
            f"max wait ({settings.max_wait * 1000:g} ms) must not be shorter than debounce "
            f"({settings.debounce * 1000:g} ms)"
        )
    return settings
