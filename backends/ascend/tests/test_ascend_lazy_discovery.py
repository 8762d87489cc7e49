"""Discovery on a host without DCMI loads only what finding the library needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Loaded only once libdcmi.so is found or a fleet is simulated.
HEAVY = [
    "accelpool_ascend.dcmi",
    "accelpool_ascend.driver",
    "accelpool_ascend.models",
    "accelpool_ascend.sim",
    "accelpool.sim.allocator",
]

SCRIPT = """
import json, sys
import accelpool
inv = accelpool.discover()
(status,) = [s for s in inv.backends() if s.name == "ascend"]
print(json.dumps({"status": status.to_json(), "modules": sorted(sys.modules)}))
"""


def test_discovery_without_dcmi_leaves_the_binding_unimported(tmp_path: Path) -> None:
    env = dict(os.environ, ACCELPOOL_BACKENDS="ascend")
    env.pop("ACCELPOOL_SIM", None)
    # A library path that does not exist: DCMI is absent even on an Ascend host.
    env["ACCELPOOL_DCMI_LIBRARY"] = str(tmp_path / "libdcmi.so")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    status, modules = result["status"], set(result["modules"])
    assert status["available"] is False
    assert "DCMI library not found" in status["reason"]
    assert "accelpool_ascend.backend" in modules  # the backend was loaded and probed
    assert [m for m in HEAVY if m in modules] == []
