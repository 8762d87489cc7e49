"""Fixtures of the NVIDIA backend's tests: simulated fleets, never a mock of pynvml."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pynvml
import pytest
from accelpool_nvidia.simulator import NvmlSimulator

import accelpool
from accelpool.sim.fleet import Fleet, load_fleet


@pytest.fixture
def fleet_file(tmp_path: Path) -> Callable[..., str]:
    """Write a one-entry NVIDIA fleet file; returns its path."""

    def make(model: str, count: int = 1, name: str = "test-fleet", **options: Any) -> str:
        lines = [
            f'name = "{name}"',
            "[[devices]]",
            'backend = "nvidia"',
            f'model = "{model}"',
            f"count = {count}",
            "[devices.options]",
        ]
        for k, v in options.items():
            lines.append(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}")
        path = tmp_path / f"{name}-{model}.toml"
        path.write_text("\n".join(lines).replace("'", '"') + "\n")
        return str(path)

    return make


@pytest.fixture
def inventory() -> Iterator[Callable[[str], accelpool.Inventory]]:
    """discover() restricted to the nvidia backend; every inventory is closed afterwards."""
    opened: list[accelpool.Inventory] = []

    def make(sim: str) -> accelpool.Inventory:
        inv = accelpool.discover(sim=sim, backends=["nvidia"])
        opened.append(inv)
        return inv

    yield make
    for inv in opened:
        inv.close()


@pytest.fixture
def plain_pynvml() -> Iterator[Callable[[str | Fleet], NvmlSimulator]]:
    """Install a fleet's simulator beneath pynvml for direct pynvml calls; restore after."""
    previous: list[Any] = []
    sims: list[NvmlSimulator] = []

    def make(spec: str | Fleet) -> NvmlSimulator:
        fleet = spec if isinstance(spec, Fleet) else load_fleet(spec)
        sim = NvmlSimulator.for_fleet(fleet)
        previous.append(sim.install())
        sims.append(sim)
        pynvml.nvmlInit()
        return sim

    yield make
    for _ in sims:
        pynvml.nvmlShutdown()
    if previous:
        pynvml.nvmlLib = previous[0]
        pynvml._nvmlGetFunctionPointer_cache.clear()
