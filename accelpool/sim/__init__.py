"""Simulated fleets: fleet descriptions, presets, and the shared state store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelpool.sim.fleet import Fleet, FleetDevice, load_fleet, preset_names
    from accelpool.sim.state import StateStore, state_dir

# Loaded on first use: the claim store needs only ``state_dir``, and a plain
# ``accelpool ls`` on real hardware reads no fleet description.
_FROM = {
    "Fleet": "fleet",
    "FleetDevice": "fleet",
    "load_fleet": "fleet",
    "preset_names": "fleet",
    "StateStore": "state",
    "state_dir": "state",
}


def __getattr__(name: str) -> Any:
    module = _FROM.get(name)
    if module is None:
        raise AttributeError(f"module 'accelpool.sim' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"accelpool.sim.{module}"), name)


__all__ = ["Fleet", "FleetDevice", "StateStore", "load_fleet", "preset_names", "state_dir"]
