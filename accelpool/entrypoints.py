"""The installed ``accelpool.*`` entry points, read once per process.

``importlib.metadata.entry_points(group=...)`` parses every entry point of every
installed distribution (console scripts, pytest plugins, ...) on each call, and a
command may ask for several ``accelpool.*`` groups. Here one pass per ``sys.path``
reads each distribution's ``entry_points.txt`` and parses only those that name an
``accelpool.`` group (four in a venv of 120 distributions): half the time of one
``importlib.metadata`` lookup, for every group at once. The answer is the one
``importlib.metadata`` gives, in its order, first distribution of a name on
``sys.path`` winning; tests and plugin sites that change ``sys.path`` get a new scan.
Loading a plugin stays ``EntryPoint.load()``.

stevedore is not on this path: four ``NamedExtensionManager`` objects cost about 130 ms
per process here, more than half of a hand-written ``ls`` (see docs/architecture.md).
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import PurePath

_PREFIX = "accelpool."
_SCANS: dict[tuple[str, ...], dict[str, list[metadata.EntryPoint]]] = {}


def _dist_key(dist: metadata.Distribution, path: str | None) -> str:
    # importlib.metadata de-duplicates on the project name read off the directory name
    # (``name-version.dist-info``), normalised; the declared name where there is none.
    if path is not None:
        stem, ext = os.path.splitext(os.path.basename(path))
        if ext in (".dist-info", ".egg-info"):
            return _normalize(stem.partition("-")[0])
    return _normalize(dist.metadata["Name"] or "")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _entry_points_text(dist: metadata.Distribution, path: str | None) -> str | None:
    if path is None:
        return dist.read_text("entry_points.txt")
    # What read_text does for a directory on disk, without pathlib's cost per file.
    try:
        with open(os.path.join(path, "entry_points.txt"), encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _scan() -> dict[str, list[metadata.EntryPoint]]:
    groups: dict[str, list[metadata.EntryPoint]] = {}
    seen: set[str] = set()
    for dist in metadata.distributions():
        where = getattr(dist, "_path", None)  # a PathDistribution's directory
        path = os.fspath(where) if isinstance(where, PurePath) else None
        key = _dist_key(dist, path)
        if key in seen:  # shadowed by the same project earlier on sys.path
            continue
        seen.add(key)
        text = _entry_points_text(dist, path)
        if not text or "[" + _PREFIX not in text:
            continue
        for ep in dist.entry_points:
            if ep.group.startswith(_PREFIX):
                groups.setdefault(ep.group, []).append(ep)
    return groups


def group(name: str) -> list[metadata.EntryPoint]:
    """The installed entry points of group ``name`` (an ``accelpool.*`` group), in
    ``importlib.metadata``'s order."""
    if not name.startswith(_PREFIX):
        return list(metadata.entry_points(group=name))
    key = tuple(sys.path)
    scan = _SCANS.get(key)
    if scan is None:
        scan = _SCANS[key] = _scan()
    return list(scan.get(name, ()))


def version(ep: metadata.EntryPoint) -> str | None:
    """The version of the distribution that declares ``ep``."""
    dist = getattr(ep, "dist", None)
    return getattr(dist, "version", None)
