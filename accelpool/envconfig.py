"""The ``ACCELPOOL_*`` settings read from the environment, each checked in one place.

A bad value is the user's to fix, so it is refused with one line that names the
variable, the value and what to set instead, never ignored or half-applied: an
environment that silently means something else (a probe timeout of ``0`` makes
every backend unavailable) is worse than an error.
"""

from __future__ import annotations

import math
import os

from accelpool.errors import InvalidRequest

LOG_ENV = "ACCELPOOL_LOG"
PROBE_TIMEOUT_ENV = "ACCELPOOL_PROBE_TIMEOUT"
BACKENDS_ENV = "ACCELPOOL_BACKENDS"

#: Seconds a backend probe may take when ``$ACCELPOOL_PROBE_TIMEOUT`` is unset.
DEFAULT_PROBE_TIMEOUT = 10.0
#: The longest probe bound accepted: past an hour a hung driver is not "slow".
MAX_PROBE_TIMEOUT = 3600.0
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def shown(value: str) -> str:
    """``value`` quoted for an error line: control characters escaped, length bounded."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def log_level() -> str:
    """The level named by ``$ACCELPOOL_LOG`` (default ``ERROR``; empty means unset)."""
    raw = os.environ.get(LOG_ENV, "").strip()
    if not raw:
        return "ERROR"
    if raw.lower() not in LOG_LEVELS:
        raise InvalidRequest(
            f"{LOG_ENV}={shown(raw)} is not a log level; set it to one of "
            f"{', '.join(LOG_LEVELS)} (or unset it)"
        )
    return raw.upper()


def probe_timeout() -> float:
    """Seconds a backend probe may take, from ``$ACCELPOOL_PROBE_TIMEOUT``."""
    raw = os.environ.get(PROBE_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_PROBE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 < value <= MAX_PROBE_TIMEOUT):  # also refuses nan and inf
        raise InvalidRequest(
            f"{PROBE_TIMEOUT_ENV}={shown(raw)} is not a number of seconds in "
            f"(0, {MAX_PROBE_TIMEOUT:g}]; set it to, say, {DEFAULT_PROBE_TIMEOUT:g} (or unset it)"
        )
    return value


def selected_backends() -> set[str] | None:
    """Backends named by ``$ACCELPOOL_BACKENDS=a,b`` (``None``: all of them)."""
    raw = os.environ.get(BACKENDS_ENV, "").strip()
    if not raw:
        return None
    names = {n.strip() for n in raw.split(",") if n.strip()}
    if not names:
        raise InvalidRequest(
            f"{BACKENDS_ENV}={shown(raw)} names no backend; list some, as in "
            f"{BACKENDS_ENV}=nvidia,opencl (or unset it for all)"
        )
    return names


def check_selected_installed(installed: set[str]) -> None:
    """Refuse ``$ACCELPOOL_BACKENDS`` naming a plugin that is not installed."""
    wanted = selected_backends()
    missing = sorted((wanted or set()) - installed)
    if missing:
        raise InvalidRequest(
            f"{BACKENDS_ENV} names {', '.join(shown(m) for m in missing)}, not an installed "
            f"backend plugin; installed: {', '.join(sorted(installed)) or 'none'} "
            "('accelpool backends' lists them)"
        )
