"""Checks a backend ships for its own capabilities: the ``accelpool.conformance`` hook.

A backend distribution registers one entry point per backend name in the group
``accelpool.conformance``; its value names a Python module of pytest checks::

    [project.entry-points."accelpool.conformance"]
    lumen = "lumen_accelpool.conformance_checks"

When the suite runs against backend ``lumen`` (full profile), it collects that module
as the area ``extras``: its ``test_*`` functions use the suite's fixtures (``backend``,
``devices``, ``ledger``, ``suite`` ...), its ``requires`` markers and its invariants,
and each capability a passing check ``requires`` (or marks with ``exercises``) counts
as exercised. A plugin that fails to load is logged, noted in the report and skipped,
never fatal (as keyring does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

GROUP = "accelpool.conformance"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtraChecks:
    """One backend's extra check module."""

    backend: str
    module: str
    path: Path


def load_extras(backend: str) -> tuple[list[ExtraChecks], list[str]]:
    """The extra check modules registered for ``backend``, and a note per plugin that
    failed to load (logged and skipped)."""
    from importlib import metadata

    from stevedore.named import NamedExtensionManager

    if not any(ep.name == backend for ep in metadata.entry_points(group=GROUP)):
        return [], []
    problems: list[str] = []

    def failed(_manager: Any, ep: Any, err: BaseException) -> None:
        log.warning("conformance checks %s (%s) failed to load: %s", ep.name, ep.value, err)
        first = (str(err).strip().splitlines() or [""])[0]
        problems.append(
            f"conformance checks {ep.value} for {ep.name} failed to load and were skipped: "
            f"{type(err).__name__}: {first}"
        )

    # stevedore keeps a group's entry points for the life of the process; a suite run
    # reads what is installed now.
    NamedExtensionManager.ENTRY_POINT_CACHE.pop(GROUP, None)
    manager: NamedExtensionManager[Any] = NamedExtensionManager(
        GROUP, names=[backend], on_load_failure_callback=failed
    )
    found: list[ExtraChecks] = []
    for ext in manager:
        plugin = ext.plugin
        path = getattr(plugin, "__file__", None)
        if not isinstance(plugin, ModuleType) or not path:
            problems.append(
                f"conformance checks {ext.entry_point.value} for {ext.name} name no module "
                "of checks and were skipped"
            )
            log.warning("%s", problems[-1])
            continue
        found.append(ExtraChecks(ext.name, plugin.__name__, Path(path).resolve()))
    return found, problems
