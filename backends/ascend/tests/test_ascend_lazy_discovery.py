"""Discovery on a host without DCMI loads only what finding the library needs."""

from __future__ import annotations

from pathlib import Path

from accelpool.testing import check_discovery_without_library

# Loaded only once libdcmi.so is found or a fleet is simulated.
HEAVY = [
    "accelpool_ascend.dcmi",
    "accelpool_ascend.driver",
    "accelpool_ascend.models",
    "accelpool_ascend.sim",
    "accelpool.sim.allocator",
]


def test_discovery_without_dcmi_leaves_the_binding_unimported(tmp_path: Path) -> None:
    # A library path that does not exist: DCMI is absent even on an Ascend host.
    check_discovery_without_library(
        "ascend",
        "ACCELPOOL_DCMI_LIBRARY",
        tmp_path / "libdcmi.so",
        HEAVY,
        reason="DCMI library not found",
    )
