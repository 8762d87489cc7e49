"""Discovery on a host without CNDev loads only what finding the library needs."""

from __future__ import annotations

from pathlib import Path

from accelpool.testing import check_discovery_without_library

# Loaded only once libcndev.so is found or a fleet is simulated.
HEAVY = [
    "accelpool_cambricon.cndev",
    "accelpool_cambricon.cndev_structs",
    "accelpool_cambricon.driver",
    "accelpool_cambricon.models",
    "accelpool_cambricon.sim",
    "accelpool.sim.allocator",
]


def test_discovery_without_cndev_leaves_the_binding_unimported(tmp_path: Path) -> None:
    # A library path that does not exist: CNDev is absent even on an MLU host.
    check_discovery_without_library(
        "cambricon",
        "ACCELPOOL_CNDEV_LIBRARY",
        tmp_path / "libcndev.so",
        HEAVY,
        reason="CNDev library not found",
    )
