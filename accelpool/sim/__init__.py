"""Simulated fleets: fleet descriptions, presets, and the shared state store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from accelpool.lazyload import lazy_attributes

if TYPE_CHECKING:
    from accelpool.sim.fleet import Fleet, FleetDevice, load_fleet, preset_names
    from accelpool.sim.state import StateStore, state_dir

# Loaded on first use: the claim store needs only ``state_dir``, and a plain
# ``accelpool ls`` on real hardware reads no fleet description.
__getattr__ = lazy_attributes(
    __name__,
    {
        "Fleet": "accelpool.sim.fleet",
        "FleetDevice": "accelpool.sim.fleet",
        "load_fleet": "accelpool.sim.fleet",
        "preset_names": "accelpool.sim.fleet",
        "StateStore": "accelpool.sim.state",
        "state_dir": "accelpool.sim.state",
    },
)


__all__ = ["Fleet", "FleetDevice", "StateStore", "load_fleet", "preset_names", "state_dir"]
