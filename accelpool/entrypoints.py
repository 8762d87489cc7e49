"""Entry points of the installed distributions, found with one cheap scan per process.

``importlib.metadata.entry_points()`` reads and parses every installed distribution's
``entry_points.txt`` (about 10 ms with a hundred installed) on every call. This scan
finds the same distributions in the same order (``sys.path`` order; in a folder,
``*.dist-info`` before ``*.egg-info``, the first of each name winning), opens only their
``entry_points.txt``, parses only the files that mention a wanted group, and keeps the
result for the life of the process (per ``sys.path``). Where distributions could come
from somewhere it does not look (a zip on ``sys.path``, a finder of its own on
``sys.meta_path``), it asks ``importlib.metadata`` instead.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
from importlib import machinery
from typing import Any

PREFIX = "[accelpool."
_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")
# importlib.metadata.EntryPoint.pattern: ``module[:attr.path] [extras]``
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


class PluginEntryPoint:
    """One entry point: ``name = value`` in ``group``, from the distribution at ``dist_path``.

    A plain class, not a dataclass: making a dataclass costs more at import than this
    whole scan.
    """

    __slots__ = ("_ep", "dist_path", "group", "name", "value")

    def __init__(
        self, name: str, value: str, group: str, dist_path: str | None = None, ep: Any = None
    ) -> None:
        self.name = name
        self.value = value
        self.group = group
        self.dist_path = dist_path
        self._ep = ep

    def __repr__(self) -> str:
        return f"PluginEntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"

    def load(self) -> Any:
        """Import the object the entry point names (as ``importlib.metadata`` does)."""
        if self._ep is not None:
            return self._ep.load()
        m = _VALUE.match(self.value)
        if m is None:
            raise ValueError(f"entry point {self.name} = {self.value!r} is malformed")
        module = importlib.import_module(m.group("module"))
        attrs = filter(None, (m.group("attr") or "").split("."))
        return functools.reduce(getattr, attrs, module)

    @property
    def version(self) -> str | None:
        """The version of the distribution that declares it."""
        if self._ep is not None:
            return getattr(getattr(self._ep, "dist", None), "version", None)
        if self.dist_path is None:
            return None
        return _version(self.dist_path)


def _version(dist_path: str) -> str | None:
    for meta in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(dist_path, meta), encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        break  # the headers end at the first blank line
                    if line.startswith("Version:"):
                        return line[len("Version:") :].strip()
        except OSError:
            continue
        return None
    return None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _dist_folders(entry: str) -> list[tuple[str, str]]:
    """(normalized name, path) of the distributions in one ``sys.path`` folder, in order."""
    try:
        children = os.listdir(entry or ".")
    except OSError:
        return []
    infos: dict[str, list[str]] = {}
    eggs: dict[str, list[str]] = {}
    for child in children:
        low = child.lower()
        if low.endswith(".dist-info"):
            infos.setdefault(_normalize(low.rpartition(".")[0].partition("-")[0]), []).append(child)
        elif low.endswith(".egg-info"):
            eggs.setdefault(low.rpartition(".")[0].partition("-")[0].replace("-", "_"), []).append(
                child
            )
    found = []
    for group in (infos, eggs):
        for children_of in group.values():
            for child in children_of:
                stem, _, _ = child.rpartition(".")
                found.append((_normalize(stem.partition("-")[0]), os.path.join(entry, child)))
    return found


def _parse(text: str, dist_path: str) -> list[PluginEntryPoint]:
    eps, group = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = _SECTION.match(line)
        if m:
            group = m.group(1).strip()
            continue
        if group is None or "=" not in line:
            continue
        name, _, value = line.partition("=")
        eps.append(PluginEntryPoint(name.strip(), value.strip(), group, dist_path))
    return eps


def _plain_layout() -> bool:
    """Whether every distribution is a folder on ``sys.path`` this scan can read."""
    for finder in sys.meta_path:
        if getattr(finder, "find_distributions", None) is None:
            continue
        if finder is not machinery.PathFinder:
            return False
    return not any(os.path.isfile(entry) for entry in sys.path if entry)


def _scan() -> list[PluginEntryPoint]:
    if not _plain_layout():
        from importlib import metadata

        every: Any = metadata.entry_points()  # Python 3.11 types it as groups by name
        return [
            PluginEntryPoint(ep.name, ep.value, ep.group, None, ep)
            for ep in every.select()
            if ep.group.startswith(PREFIX[1:])
        ]
    seen: set[str] = set()
    eps: list[PluginEntryPoint] = []
    for entry in sys.path:
        for name, path in _dist_folders(entry):
            if name in seen:
                continue
            seen.add(name)
            try:
                with open(os.path.join(path, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            if PREFIX in text:
                eps.extend(_parse(text, path))
    return eps


_SCANS: dict[tuple[str, ...], list[PluginEntryPoint]] = {}


def group(name: str) -> list[PluginEntryPoint]:
    """The installed entry points of group ``name`` (an ``accelpool.*`` group), in order."""
    key = tuple(sys.path)
    scan = _SCANS.get(key)
    if scan is None:
        scan = _SCANS[key] = _scan()
    return [ep for ep in scan if ep.group == name]
