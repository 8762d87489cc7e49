"""Discovery on a host without CNDev loads only what finding the library needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Loaded only once libcndev.so is found or a fleet is simulated.
HEAVY = [
    "accelpool_cambricon.cndev",
    "accelpool_cambricon.driver",
    "accelpool_cambricon.models",
    "accelpool_cambricon.sim",
    "accelpool.sim.allocator",
]

SCRIPT = """
import json, sys
import accelpool
inv = accelpool.discover()
(status,) = [s for s in inv.backends() if s.name == "cambricon"]
print(json.dumps({"status": status.to_json(), "modules": sorted(sys.modules)}))
"""


def test_discovery_without_cndev_leaves_the_binding_unimported(tmp_path: Path) -> None:
    env = dict(os.environ, ACCELPOOL_BACKENDS="cambricon")
    env.pop("ACCELPOOL_SIM", None)
    # A library path that does not exist: CNDev is absent even on an MLU host.
    env["ACCELPOOL_CNDEV_LIBRARY"] = str(tmp_path / "libcndev.so")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    status, modules = result["status"], set(result["modules"])
    assert status["available"] is False
    assert "CNDev library not found" in status["reason"]
    assert "accelpool_cambricon.backend" in modules  # the backend was loaded and probed
    assert [m for m in HEAVY if m in modules] == []
