"""The installed ``accelpool.*`` entry points, read once per process.

``importlib.metadata`` reads every installed distribution's ``entry_points.txt`` on each
call, and a command may ask for one group more than once (listing, then loading), so
each group's answer is kept for the life of the process, per ``sys.path`` (tests and
plugin sites change it). Loading a plugin stays ``EntryPoint.load()``.

stevedore is not on this path: four ``NamedExtensionManager`` objects cost about 130 ms
per process here, more than half of a hand-written ``ls`` (see docs/architecture.md).
"""

from __future__ import annotations

import sys
from importlib import metadata

_SCANS: dict[tuple[str, tuple[str, ...]], list[metadata.EntryPoint]] = {}


def group(name: str) -> list[metadata.EntryPoint]:
    """The installed entry points of group ``name``, in ``importlib.metadata``'s order."""
    key = (name, tuple(sys.path))
    scan = _SCANS.get(key)
    if scan is None:
        scan = _SCANS[key] = list(metadata.entry_points(group=name))
    return list(scan)


def version(ep: metadata.EntryPoint) -> str | None:
    """The version of the distribution that declares ``ep``."""
    dist = getattr(ep, "dist", None)
    return getattr(dist, "version", None)
