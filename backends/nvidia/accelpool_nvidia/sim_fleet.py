"""The static side of a simulated NVIDIA fleet: driver versions and the GPUs it has.

A fleet entry (model, count, MIG default, virtualisation mode, privileges) becomes
:class:`SimGpu` records with stable UUIDs and DGX-like PCI addresses.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from accelpool.sim.fleet import FleetDevice
from accelpool_nvidia.models import GpuModel, find_model, model_keys

DRIVER_VERSION = "550.54.15"
CUDA_DRIVER_VERSION = 12040  # CUDA 12.4, as nvmlSystemGetCudaDriverVersion reports it
NVML_VERSION = "12.550.54.15"

VIRT_NONE, VIRT_PASSTHROUGH, VIRT_VGPU, VIRT_HOST_VGPU, VIRT_HOST_VSGA = 0, 1, 2, 3, 4
_VIRT_OPTIONS = {
    "none": VIRT_NONE,
    "bare-metal": VIRT_NONE,
    "passthrough": VIRT_PASSTHROUGH,
    "vgpu": VIRT_VGPU,
    "guest-vgpu": VIRT_VGPU,
    "host-vgpu": VIRT_HOST_VGPU,
    "host-vsga": VIRT_HOST_VSGA,
}
_NS = uuidlib.UUID("6f1c3a52-8a7e-4d0b-9d55-2b8a0c1e7f31")


def _truthy(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on", "enabled", "enable"}
    return bool(value)


@dataclass(frozen=True)
class SimGpu:
    """One simulated GPU: the facts that never change."""

    index: int
    model: GpuModel
    uuid: str
    pci_bus_id: str  # NVML form, 00000000:07:00.0
    serial: str
    mig_default: bool
    virtualization: int
    privileged: bool

    @property
    def sysfs_pci(self) -> str:
        """The PCI address as sysfs spells it: 0000:07:00.0."""
        domain, rest = self.pci_bus_id.split(":", 1)
        return f"{int(domain, 16):04x}:{rest.lower()}"

    @property
    def mig_capable(self) -> bool:
        return bool(self.model.mig_profiles)


#: PCI buses of the eight GPUs of a DGX A100; larger fleets continue on further domains
_DGX_BUSES = (0x07, 0x0F, 0x47, 0x4E, 0x87, 0x90, 0xB7, 0xBD)


def _pci_location(index: int) -> tuple[int, int]:
    if index < len(_DGX_BUSES):
        return 0, _DGX_BUSES[index]
    domain, slot = divmod(index - len(_DGX_BUSES), 240)
    return domain + 1, 0x10 + slot


def _build_gpus(fleet: str, devices: Sequence[FleetDevice]) -> list[SimGpu]:
    gpus: list[SimGpu] = []
    for entry in devices:
        model = find_model(entry.model)
        if model is None:
            raise ValueError(
                f"unknown NVIDIA model {entry.model!r} (known: {', '.join(model_keys())})"
            )
        opts = entry.options
        virt_raw = str(opts.get("virtualization", "none")).strip().lower()
        if virt_raw not in _VIRT_OPTIONS:
            raise ValueError(
                f"unknown virtualization {virt_raw!r} for {entry.model} "
                f"(choose from {', '.join(sorted(_VIRT_OPTIONS))})"
            )
        mig = _truthy(opts.get("mig"), False)
        privileged = _truthy(opts.get("privileged"), True)
        for _ in range(entry.count):
            i = len(gpus)
            u = uuidlib.uuid5(_NS, f"{fleet}/{i}/{model.key}")
            domain, bus = _pci_location(i)
            gpus.append(
                SimGpu(
                    index=i,
                    model=model,
                    uuid=f"GPU-{u}",
                    pci_bus_id=f"{domain:08X}:{bus:02X}:00.0",
                    serial=f"{1564720000000 + i}",
                    mig_default=mig,
                    virtualization=_VIRT_OPTIONS[virt_raw],
                    privileged=privileged,
                )
            )
    return gpus
