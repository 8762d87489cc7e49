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
from accelpool.testing import sim_discovery, write_fleet


@pytest.fixture
def a100_40_table() -> dict[str, tuple[int, int]]:
    """NVIDIA's A100-SXM4-40GB MIG table: profile -> (max instances, memory MiB), in order."""
    return {
        "1g.5gb": (7, 4864),
        "1g.5gb+me": (1, 4864),
        "1g.10gb": (4, 9856),
        "2g.10gb": (3, 9856),
        "3g.20gb": (2, 19968),
        "4g.20gb": (1, 19968),
        "7g.40gb": (1, 40192),
    }


@pytest.fixture
def fleet_file(tmp_path: Path) -> Callable[..., str]:
    """Write a one-entry NVIDIA fleet file; returns its path."""

    def make(model: str, count: int = 1, name: str = "test-fleet", **options: Any) -> str:
        folder = tmp_path / model  # one file per model, so fleets in one test do not clash
        folder.mkdir(exist_ok=True)
        return write_fleet(folder, name, "nvidia", [(model, count, options)])

    return make


@pytest.fixture
def inventory() -> Iterator[Callable[[str], accelpool.Inventory]]:
    """discover() restricted to the nvidia backend; every inventory is closed afterwards."""
    with sim_discovery("nvidia") as make:
        yield make


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
