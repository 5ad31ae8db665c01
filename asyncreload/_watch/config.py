"""The one place where defaults, environment variables and arguments become settings.

Precedence: an explicit argument, then the environment, then the default.

==============================  =================================================
``ASYNCRELOAD_FORCE_POLLING``   ``1``/``true``/``yes``: poll everything
``ASYNCRELOAD_POLL``            paths to poll, separated by ``:`` (``os.pathsep``)
``ASYNCRELOAD_POLL_INTERVAL``   seconds between sweeps
``ASYNCRELOAD_DEBOUNCE``        milliseconds of quiet that end a batch
``ASYNCRELOAD_EVENTS_BACKEND``  ``inotify`` (Linux's default) or ``watchfiles``
==============================  =================================================
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from ._exceptions import ConfigError

__all__ = ["DEFAULTS", "EventsBackend", "WatchSettings", "resolve"]

EventsBackend = Literal["inotify", "watchfiles"]
"""What reads the kernel's events: our own inotify reader (Linux), or watchfiles' Rust backend."""

_EVENTS_BACKENDS: dict[str, EventsBackend] = {"inotify": "inotify", "watchfiles": "watchfiles"}
_LINUX = sys.platform.startswith("linux")


@dataclass(frozen=True)
class WatchSettings:
    """Everything the watcher needs to know, resolved and checked."""

    force_polling: bool = False
    poll: tuple[str, ...] = ()
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


def _env_float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None


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


def _positive(name: str, value: float, *, zero_ok: bool = False) -> float:
    if math.isnan(value) or value < 0 or (value == 0 and not zero_ok):  # NaN included
        raise ConfigError(f"{name} must be a {'non-negative' if zero_ok else 'positive'} "
                          f"number of seconds, not {value!r}")  # fmt: skip
    return value


def _percent(name: str, value: float) -> float:
    if not 0 < value <= 100:  # NaN included
        raise ConfigError(f"{name} must be a percentage of one core (above 0, up to 100), "
                          f"not {value!r}")  # fmt: skip
    return value


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
        poll_interval = _env_float(env, "ASYNCRELOAD_POLL_INTERVAL")
    if poll_cpu is None:
        poll_cpu = _env_float(env, "ASYNCRELOAD_POLL_CPU")
    if debounce is None:
        debounce_ms = _env_float(env, "ASYNCRELOAD_DEBOUNCE")
        debounce = None if debounce_ms is None else debounce_ms / 1000
    settings = WatchSettings(
        force_polling=force_polling,
        poll=(*poll, *env_poll),
        events=tuple(events),
        poll_interval=_positive(
            "poll interval", DEFAULTS.poll_interval if poll_interval is None else poll_interval
        ),
        poll_cpu=None if poll_cpu is None else _percent("poll CPU", poll_cpu),
        debounce=_positive(
            "debounce", DEFAULTS.debounce if debounce is None else debounce, zero_ok=True
        ),
        max_wait=_positive("max wait", DEFAULTS.max_wait if max_wait is None else max_wait),
        events_backend=(
            _events_backend(env, "ASYNCRELOAD_EVENTS_BACKEND") or DEFAULTS.events_backend
        ),
    )
    if settings.max_wait < settings.debounce:
        raise ConfigError(
            f"max wait ({settings.max_wait} s) must not be shorter than debounce "
            f"({settings.debounce} s)"
        )
    return settings
