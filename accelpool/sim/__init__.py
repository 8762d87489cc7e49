"""Simulated fleets: fleet descriptions, presets, and the shared state store."""

from accelpool.sim.fleet import Fleet, FleetDevice, load_fleet, preset_names
from accelpool.sim.state import StateStore, state_dir

__all__ = ["Fleet", "FleetDevice", "StateStore", "load_fleet", "preset_names", "state_dir"]
