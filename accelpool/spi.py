"""The service-provider interface a backend plugin implements.

A backend is a subclass of :class:`Backend`, registered under the entry point
group ``accelpool.backends``::

    [project.entry-points."accelpool.backends"]
    myvendor = "accelpool_myvendor.backend:MyVendorBackend"

A plugin may also register a *presence check* under ``accelpool.presence``, by the
same name: a function of a :class:`BackendContext` that raises
:class:`~accelpool.errors.BackendUnavailable`, exactly as :meth:`Backend.probe`
would, when the vendor library is not on this host, and returns otherwise::

    [project.entry-points."accelpool.presence"]
    myvendor = "accelpool_myvendor.library:presence"

Discovery calls it first (never for a simulated fleet) and imports the backend only
when it returns, so a host without the library pays for a small module, not the
whole backend. It must not claim more than absence: anything else is the probe's.

Only :meth:`Backend.probe` and :meth:`Backend.devices` are required; every other
operation has a default that raises :class:`~accelpool.errors.UnsupportedOperation`
(or returns nothing to list). Declare what you support in
:meth:`Backend.capabilities`. Raise only :mod:`accelpool.errors` classes: map
every vendor error onto them and keep its code and text.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelpool.capabilities import Capabilities, Capability
from accelpool.errors import AccelPoolError, UnsupportedOperation
from accelpool.types import (
    AttributeValue,
    BackendStatus,
    DeviceInfo,
    ExecutionProvider,
    OnnxPlacement,
    PartitionInfo,
    PartitionProfile,
    Placement,
    Telemetry,
)

if TYPE_CHECKING:  # fleets are only loaded when simulating
    from accelpool.container import ContainerEdits
    from accelpool.pcisysfs import PassthroughInfo, PciSysfs
    from accelpool.sim.fleet import FleetDevice
    from accelpool.sim.state import StateStore

__all__ = [
    "FAULTS",
    "AccelPoolError",
    "AttributeValue",
    "Backend",
    "BackendContext",
    "BackendStatus",
    "Capabilities",
    "Capability",
    "DeviceInfo",
    "ExecutionProvider",
    "OnnxPlacement",
    "PartitionInfo",
    "PartitionProfile",
    "Placement",
    "SimContext",
    "Target",
    "Telemetry",
]

#: Faults a simulator may inject through :meth:`Backend.inject_fault`.
FAULTS = ("device-lost", "create-fails-midway")

#: What a session or visibility call targets: a whole device or one partition.
Target = DeviceInfo | PartitionInfo


@dataclass(frozen=True)
class SimContext:
    """Handed to a backend when it runs inside a simulated fleet.

    ``devices`` are this backend's entries of the fleet file; ``state`` is the
    store every process simulating the fleet shares (use your backend's name as
    the top-level key).
    """

    fleet: str
    devices: tuple[FleetDevice, ...]
    state: StateStore
    #: a folder of this fleet's own, for simulated files (e.g. a sysfs tree)
    root: Path


@dataclass(frozen=True)
class BackendContext:
    """What the registry gives a backend when it creates it."""

    name: str
    sim: SimContext | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


class Backend(abc.ABC):
    """Base class of every backend plugin. One instance per discovery."""

    def __init__(self, context: BackendContext) -> None:
        self.context = context

    @property
    def name(self) -> str:
        return self.context.name

    # -- required ----------------------------------------------------------

    @abc.abstractmethod
    def probe(self) -> str | None:
        """Check the vendor library can run here; return its version if known.

        Raise :class:`~accelpool.errors.BackendUnavailable` with a reason a user can
        act on (``"NVML library not found (libnvidia-ml.so.1)"``) when it cannot.
        Called once, in a thread with a time bound, before anything else.
        """

    @abc.abstractmethod
    def devices(self) -> Sequence[DeviceInfo]:
        """Every device this backend sees, ordered by index."""

    # -- optional ----------------------------------------------------------

    def capabilities(self) -> Capabilities:
        """What this backend supports; undeclared capabilities are not tested."""
        return Capabilities.of([Capability.DISCOVERY])

    def profiles(self, device: DeviceInfo) -> Sequence[PartitionProfile]:
        """The partition shapes ``device`` offers (empty when it cannot be partitioned)."""
        return []

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        """Live partitions of ``device`` (those this process can see)."""
        return []

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        """Create one partition of ``profile``; ``placement`` is a start the profile offers."""
        raise UnsupportedOperation(f"backend {self.name} cannot create partitions")

    def destroy_partition(self, partition: PartitionInfo) -> None:
        """Destroy a partition; :class:`NotFound` if it is already gone."""
        raise UnsupportedOperation(f"backend {self.name} cannot destroy partitions")

    def telemetry(self, device: DeviceInfo) -> Telemetry:
        """Live readings of ``device``."""
        raise UnsupportedOperation(f"backend {self.name} reports no telemetry")

    def partition_telemetry(self, partition: PartitionInfo) -> Telemetry:
        """Live readings of one partition; optional.

        The default knows only the partition's size: ``memory_total_bytes`` is its
        memory and every other field is ``None``. Override it where the vendor reports
        per-partition readings (NVML does for MIG devices).
        """
        return Telemetry(memory_total_bytes=partition.memory_bytes)

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        """Environment variables that make exactly ``targets`` visible to a runtime."""
        raise UnsupportedOperation(f"backend {self.name} names no visibility environment")

    def onnx_placement(self, target: Target) -> OnnxPlacement:
        """The onnxruntime providers and options that run a model on ``target``."""
        raise UnsupportedOperation(f"backend {self.name} cannot run ONNX models")

    def container_edits(self, target: Target) -> ContainerEdits:
        """What a container needs to use ``target``: environment, device nodes, mounts.

        Optional. The default is ``visibility_env([target])`` and no device node; a
        backend whose devices are reached through device nodes names them here (see
        :mod:`accelpool.container`; build host paths with :func:`accelpool.container.node`
        so that they lie under the fleet's folder when simulated).
        """
        from accelpool.container import edits_from_env

        return edits_from_env(self.visibility_env([target]))

    # -- whole-device passthrough (VFIO); defaults work for any PCI-backed backend ----
    #: the host driver of this backend's PCI functions (a simulated host binds it)
    pci_driver: str | None = None

    def pci_address(self, device: DeviceInfo) -> str | None:
        """``device``'s PCI address as sysfs spells it (``0000:07:00.0``), ``None`` if none.

        Default: the attribute whose name ends in ``pciBusID`` (``nvidia.com/pciBusID``).
        """
        from accelpool.pcisysfs import pci_address

        for key, value in device.attributes.items():
            if key.lower().endswith("pcibusid") and isinstance(value, str) and value:
                return pci_address(value)
        return None

    def pci_sysfs(self) -> PciSysfs:
        """The PCI sysfs passthrough runs on: ``/sys`` (option ``host_root`` moves the
        ``/``), or, in a simulated fleet, a tree laid out like it under the fleet's folder."""
        return _default_pci_sysfs(self)

    def passthrough_state(self, device: DeviceInfo) -> PassthroughInfo:
        """Driver, ``driver_override`` and IOMMU group of ``device`` as sysfs says."""
        return self.pci_sysfs().info(_require_pci(self, device))

    def bind_vfio(self, device: DeviceInfo) -> PassthroughInfo:
        """Detach ``device`` from its host driver and bind it to ``vfio-pci``.

        The core has already refused a device with partitions, claims or processes.
        Default: the kernel's sysfs steps (:func:`accelpool.vfio.sysfs_bind`); each step
        is idempotent, so a bind killed midway is completed by the next bind or unbind.
        """
        from accelpool.vfio import sysfs_bind

        return sysfs_bind(self.pci_sysfs(), _require_pci(self, device))

    def unbind_vfio(self, device: DeviceInfo) -> PassthroughInfo:
        """Give ``device`` back to its host driver (clear the override, unbind, probe)."""
        from accelpool.vfio import sysfs_unbind

        return sysfs_unbind(self.pci_sysfs(), _require_pci(self, device))

    def device_processes(self, device: DeviceInfo) -> Sequence[int] | None:
        """Process ids using ``device`` (NVML's running processes, say); ``None``: unknown."""
        return None

    def inject_fault(self, fault: str, device: DeviceInfo) -> None:
        """Simulators only: make ``device`` misbehave from now on.

        ``fault`` is one of :data:`FAULTS`: ``"device-lost"`` (every later call on the
        device raises :class:`~accelpool.errors.DeviceLost`) or ``"create-fails-midway"``
        (the next partition create fails after its first vendor step; the backend must
        roll back so nothing is left behind). Declare ``Capability.FAULT_INJECTION``.
        """
        raise UnsupportedOperation(f"backend {self.name} cannot inject faults")

    def clear_faults(self) -> None:
        """Simulators only: undo every injected fault."""
        raise UnsupportedOperation(f"backend {self.name} cannot inject faults")

    def collect_garbage(self) -> Sequence[str]:
        """Finish or remove what a creator killed half way left behind; what was done.

        A create that is killed (``kill -9``) between two vendor steps can leave a
        half-made partition (``PartitionInfo.complete`` false). Backends that keep a
        record of creates in progress override this to clean up after creators that
        are gone; it must never touch the work of a live one. Default: nothing to do.
        """
        return ()

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately empty by default
        """Release vendor resources (called when the inventory is closed)."""


def _require_pci(backend: Backend, device: DeviceInfo) -> str:
    pci = backend.pci_address(device)
    if pci is None:
        raise UnsupportedOperation(
            f"{backend.name}:{device.index} has no PCI address: it cannot be passed through"
        )
    return pci


def _default_pci_sysfs(backend: Backend) -> PciSysfs:
    from accelpool.pcisysfs import PciSysfs

    cached = getattr(backend, "_accelpool_pci_sysfs", None)
    if isinstance(cached, PciSysfs):
        return cached
    sim = backend.context.sim
    if sim is None:
        fs = PciSysfs(Path(str(backend.context.options.get("host_root", "/"))))
    else:
        from accelpool.sim.pcikernel import SimPciKernel

        kernel = SimPciKernel(sim.root / "host", lock=sim.state.lock)
        for info in backend.devices():
            pci = backend.pci_address(info)
            if pci is not None:
                kernel.add_function(pci, backend.pci_driver or backend.name)
        fs = PciSysfs(sim.root / "host", kernel=kernel)
    backend._accelpool_pci_sysfs = fs  # type: ignore[attr-defined]
    return fs
