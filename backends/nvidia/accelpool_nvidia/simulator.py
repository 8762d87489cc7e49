"""A stateful NVML simulator that plugs in beneath pynvml as its ``nvmlLib``.

pynvml resolves every C function with ``getattr(pynvml.nvmlLib, name)`` and calls
it with raw ctypes arguments. :class:`NvmlLib` answers those calls the way
``libnvidia-ml.so.1`` does (same symbols, same out-parameters, same return
codes), so pynvml's own wrappers, and everything above them, run unchanged::

    sim = NvmlSimulator.for_fleet(accelpool.sim.load_fleet("dgx-a100"))
    sim.install()                      # pynvml.nvmlLib = sim.lib
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    gi = pynvml.nvmlDeviceCreateGpuInstance(h, 19)   # a 1g.5gb GPU instance

What it models: the A100-SXM4-40GB/80GB, H100 80GB HBM3 and H200 MIG tables,
placements on the 8 memory slices, per-profile instance limits, GPU and compute
instances (IN_USE when a GPU instance still has compute instances, or a compute
instance has processes), Ampere's pending MIG mode, host vGPU types with a
mediated-device sysfs tree kept consistent with NVML, and faults (a GPU falling
off the bus, a chosen call failing on its Nth use).

State lives in the fleet's :class:`~accelpool.sim.state.StateStore` under the key
``"nvidia"`` so separate processes see one fleet. Reads are cached per process
and re-read only when the state file changes.

The simulator is built in layers, one module each: :mod:`~accelpool_nvidia.sim_fleet`
(the GPUs), :mod:`~accelpool_nvidia.sim_state` (the persisted state),
:mod:`~accelpool_nvidia.sim_control` (faults, processes, resets),
:mod:`~accelpool_nvidia.sim_mig` (the MIG engine), :mod:`~accelpool_nvidia.sim_vgpu`
and :mod:`~accelpool_nvidia.sim_sysfs` (vGPU, mdev and the sysfs tree), and
:mod:`~accelpool_nvidia.sim_lib` with the ``sim_api_*`` modules (the C functions
pynvml calls, on the helpers of :mod:`~accelpool_nvidia.sim_abi`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accelpool.sim.fleet import Fleet, FleetDevice
from accelpool.sim.state import StateStore
from accelpool_nvidia.sim_control import SimError as SimError
from accelpool_nvidia.sim_fleet import DRIVER_VERSION as DRIVER_VERSION
from accelpool_nvidia.sim_fleet import VIRT_HOST_VGPU, _build_gpus
from accelpool_nvidia.sim_fleet import SimGpu as SimGpu
from accelpool_nvidia.sim_lib import NvmlLib as NvmlLib
from accelpool_nvidia.sim_state import _Snapshot
from accelpool_nvidia.sim_sysfs import SimMdevSysfs as SimMdevSysfs
from accelpool_nvidia.sim_sysfs import SimSysfs

__all__ = [
    "DRIVER_VERSION",
    "NvmlLib",
    "NvmlSimulator",
    "SimError",
    "SimGpu",
    "SimMdevSysfs",
]


class NvmlSimulator(SimSysfs):
    """The simulated driver of one fleet: its GPUs, shared state and NVML entry points."""

    def __init__(
        self,
        fleet: str,
        devices: Sequence[FleetDevice],
        store: StateStore,
        root: Path | None = None,
    ) -> None:
        self.fleet = fleet
        self.gpus = _build_gpus(fleet, devices)
        self.store = store
        self.root = Path(root) if root is not None else store.path.parent / "nvidia"
        self._by_uuid = {g.uuid: g.index for g in self.gpus}
        self._by_pci = {g.pci_bus_id: g.index for g in self.gpus}
        self._vgpu_gpus = [g for g in self.gpus if g.virtualization == VIRT_HOST_VGPU]
        self._snap_key: tuple[int, int, int] | None = None
        self._snap = _Snapshot({})
        self._init_count = 0
        self._pinned: _Snapshot | None = None
        self._rendered: _Snapshot | None = None  # the state the sysfs tree last showed
        self._batch: dict[str, Any] | None = None
        self._batch_snap: _Snapshot | None = None
        #: NVML calls made through this simulator in this process, by C symbol
        self.calls: Counter[str] = Counter()
        self.lib = NvmlLib(self)

    # -- construction helpers ------------------------------------------------------
    @classmethod
    def for_fleet(cls, fleet: Fleet) -> NvmlSimulator:
        """The simulator of a loaded fleet (its NVIDIA devices)."""
        return cls(
            fleet.name, fleet.for_backend("nvidia"), fleet.state(), fleet.state_root() / "nvidia"
        )

    def install(self) -> Any:
        """Make pynvml call this simulator; returns the ``nvmlLib`` it replaced."""
        import pynvml

        with pynvml.libLoadLock:
            previous = pynvml.nvmlLib
            pynvml.nvmlLib = self.lib
            pynvml._nvmlGetFunctionPointer_cache.clear()
        return previous
