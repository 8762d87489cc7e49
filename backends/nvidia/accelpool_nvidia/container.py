"""Container edits of NVIDIA GPUs and MIG devices (what ``nvidia-ctk cdi generate`` gives).

A whole GPU is ``/dev/nvidia<minor>``; a MIG device is its parent's node plus the two
``nvidia-caps`` nodes of its GPU instance and compute instance. ``/dev/nvidiactl`` and
the UVM nodes are needed by every target, so they are the shared nodes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pynvml

from accelpool.container import ContainerEdits, node
from accelpool.spi import Target
from accelpool.types import PartitionInfo

if TYPE_CHECKING:
    from accelpool_nvidia.targets import CudaTargets

SHARED = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
MIG_MINORS = Path("/proc/driver/nvidia-caps/mig-minors")
#: the driver's layout of mig-minors (NVIDIA's MIG user guide, "Device Nodes and
#: Capabilities"): 'config' 1, 'monitor' 2, then for each of 32 GPU minors 15 GPU
#: instances of 9 entries each (the instance's 'access', then 8 compute instances),
#: ending at 'gpu31/gi14/ci7/access 4322'
_GPUS, _GIS_PER_GPU, _CIS_PER_GI, _FIRST = 32, 15, 8, 3
_PER_GI = 1 + _CIS_PER_GI


def render_mig_minors() -> str:
    """The whole ``mig-minors`` table as the driver writes it."""
    lines = ["config 1", "monitor 2"]
    for gpu in range(_GPUS):
        for gi in range(_GIS_PER_GPU):
            base = _FIRST + (gpu * _GIS_PER_GPU + gi) * _PER_GI
            lines.append(f"gpu{gpu}/gi{gi}/access {base}")
            lines.extend(f"gpu{gpu}/gi{gi}/ci{ci}/access {base + 1 + ci}" for ci in range(8))
    return "\n".join(lines) + "\n"


def sim_mig_minors(root: Path) -> Path:
    """The simulated fleet's ``mig-minors`` under its root, written once if absent, so
    that simulated specs read the table as real ones do."""
    path = Path(root) / MIG_MINORS.relative_to("/")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(render_mig_minors())
        os.replace(tmp, path)
    return path


def cap_minors(
    gpu_minor: int, gi: int, ci: int, table: Path | None = MIG_MINORS
) -> tuple[int, int]:
    """Minors of ``nvidia-cap<N>`` for GPU instance ``gi`` and its compute instance ``ci``.

    Read from the driver's ``mig-minors`` table when it is there, else computed from
    its fixed layout (the same numbers, see :func:`render_mig_minors`).
    """
    gi_key, ci_key = f"gpu{gpu_minor}/gi{gi}/access", f"gpu{gpu_minor}/gi{gi}/ci{ci}/access"
    if table is not None:
        with contextlib.suppress(OSError, ValueError):
            rows = dict(line.rsplit(" ", 1) for line in table.read_text().splitlines() if line)
            if gi_key in rows and ci_key in rows:
                return int(rows[gi_key]), int(rows[ci_key])
    base = _FIRST + gpu_minor * _GIS_PER_GPU * _PER_GI + gi * _PER_GI
    return base, base + 1 + ci


def nvidia_edits(backend: CudaTargets, target: Target) -> ContainerEdits:
    env = backend.visibility_env([target])  # refuses vGPUs and MIG-enabled whole GPUs
    parent = target.device_native_id if isinstance(target, PartitionInfo) else target.native_id
    with backend._nvml(f"reading the device node of {backend.name}:{target.native_id}"):
        minor = int(pynvml.nvmlDeviceGetMinorNumber(pynvml.nvmlDeviceGetHandleByUUID(parent)))
    nodes = [node(backend, f"/dev/nvidia{minor}")]
    if isinstance(target, PartitionInfo):
        gi = int(target.attributes["nvidia.com/gpuInstanceId"])
        ci = int(target.attributes["nvidia.com/computeInstanceId"])
        sim = backend.context.sim
        table = MIG_MINORS if sim is None else sim_mig_minors(sim.root)
        for m in cap_minors(minor, gi, ci, table):
            nodes.append(node(backend, f"/dev/nvidia-caps/nvidia-cap{m}", "r"))
    return ContainerEdits(
        env=env,
        device_nodes=tuple(nodes),
        shared_device_nodes=tuple(node(backend, p) for p in SHARED),
    )
