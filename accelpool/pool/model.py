"""Pure data for fleet placement: hosts, their devices, demands and the assignments made.

Nothing here talks to a backend: a host is what a pool (or the planner) knows about a
machine, a demand is what one workload asks for. Capacity is in integer units so that
replays are exact: CPU in millicores, memory in MiB, a device's share in milli (1000 is
a whole device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from accelpool.errors import InvalidRequest

MILLI = 1000


@dataclass(frozen=True)
class MigInstance:
    """A MIG instance already on a device: its profile name and placement start slice."""

    profile: str
    start: int


@dataclass(frozen=True)
class PoolDevice:
    """One accelerator of a host.

    ``free_milli`` is the share still free in fractional mode (1000: untouched).
    ``mig`` lists the MIG instances already created, used in MIG mode. ``claimed``
    instances (and the used share) are never moved: placement only adds.
    """

    model: str
    free_milli: int = MILLI
    mig: tuple[MigInstance, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.free_milli <= MILLI:
            raise InvalidRequest(
                f"device free_milli {self.free_milli} is out of range: give 0..{MILLI}"
            )


@dataclass(frozen=True)
class Host:
    """A machine: its free CPU (millicores), free memory (MiB) and its devices."""

    name: str
    cpu_milli: int
    memory_mib: int
    devices: tuple[PoolDevice, ...] = ()

    def __post_init__(self) -> None:
        if self.cpu_milli < 0 or self.memory_mib < 0:
            raise InvalidRequest(f"host {self.name!r} has negative CPU or memory: give >= 0")
        object.__setattr__(self, "devices", tuple(self.devices))


@dataclass(frozen=True)
class Demand:
    """What one workload asks for.

    ``gpus`` whole devices (all on one host), or, when ``gpus`` is 1, ``gpu_milli`` < 1000
    for a share of one device. ``gpus`` 0 is a CPU-only task. ``models`` restricts the
    device model (any of them); empty means any model.
    """

    cpu_milli: int
    memory_mib: int = 0
    gpus: int = 0
    gpu_milli: int = MILLI
    models: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        if self.cpu_milli < 0 or self.memory_mib < 0 or self.gpus < 0:
            raise InvalidRequest(
                f"demand {self.name or '?'} has a negative request: give CPU, memory "
                "and GPU counts >= 0"
            )
        if self.gpus == 0:
            object.__setattr__(self, "gpu_milli", 0)
        elif not 0 < self.gpu_milli <= MILLI:
            raise InvalidRequest(
                f"demand {self.name or '?'} asks gpu_milli {self.gpu_milli}: give 1..{MILLI}"
            )
        elif self.gpus > 1 and self.gpu_milli != MILLI:
            raise InvalidRequest(
                f"demand {self.name or '?'} asks a share of {self.gpus} devices: a share "
                "(gpu_milli < 1000) is for one device only"
            )
        object.__setattr__(self, "models", tuple(m for m in self.models if m))

    @property
    def is_share(self) -> bool:
        """True for a fractional request: a share of one device."""
        return self.gpus == 1 and self.gpu_milli < MILLI

    @property
    def total_milli(self) -> int:
        """The device capacity asked for, in milli (2 whole devices: 2000)."""
        return self.gpus * self.gpu_milli


@dataclass(frozen=True)
class Assignment:
    """Where one demand went: host index and name, device indexes on that host, and in
    MIG mode the profile and placement start of the instance created on each device."""

    demand: int
    host: int
    host_name: str
    devices: tuple[int, ...]
    profile: str | None = None
    start: int | None = None


@dataclass
class PlacementResult:
    """The outcome of placing a list of demands."""

    assignments: list[Assignment] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    hosts: Sequence[Host] = ()
    allocated_units: int = 0
    capacity_units: int = 0

    @property
    def unallocated_pct(self) -> float:
        """Share of device capacity left unallocated, in percent."""
        if self.capacity_units == 0:
            return 0.0
        return 100.0 * (1.0 - self.allocated_units / self.capacity_units)
