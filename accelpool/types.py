"""Frozen value types that cross the SPI and appear in JSON output.

Backends build these; the core wraps them into the public handles
(:class:`accelpool.Device`, :class:`accelpool.Partition`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

#: A vendor-qualified attribute value, as in Kubernetes DRA (bool, int, string, version).
AttributeValue = str | int | float | bool
Scope = Literal["device", "process"]
PartitionKind = Literal["mig", "vgpu", "vnpu", "mim", "smlu", "subdevice", "slice"]


def _freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Placement:
    """Where a partition sits on its device: ``size`` units from ``start``.

    Units are the vendor's (MIG memory slices, for example). Two partitions on one
    device overlap when their ``[start, start+size)`` ranges intersect.
    """

    start: int
    size: int

    def overlaps(self, other: Placement) -> bool:
        return self.start < other.start + other.size and other.start < self.start + self.size

    def to_json(self) -> dict[str, int]:
        return {"start": self.start, "size": self.size}


@dataclass(frozen=True)
class DeviceInfo:
    """One physical accelerator as a backend reports it.

    ``native_id`` must be stable across calls and processes (a UUID where the vendor
    has one); the public id is ``"<backend>:<native_id>"``.
    """

    native_id: str
    index: int
    vendor: str
    model: str
    memory_bytes: int
    compute_units: int
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    #: the device stopped answering (fell off the bus): it stays listed at its index,
    #: and every operation on it raises DeviceLost
    lost: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", _freeze(self.attributes))


@dataclass(frozen=True)
class PartitionProfile:
    """A shape a device can be cut into, named as the vendor names it.

    ``max_count`` is how many fit on an empty device; ``available`` how many more
    fit now (``None`` when the backend cannot tell); ``placements`` the positions
    the vendor allows (empty when unconstrained).
    """

    name: str
    kind: PartitionKind
    memory_bytes: int
    compute_units: int
    max_count: int
    placements: tuple[Placement, ...] = ()
    available: int | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "placements", tuple(self.placements))
        object.__setattr__(self, "attributes", _freeze(self.attributes))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "memory_bytes": self.memory_bytes,
            "compute_units": self.compute_units,
            "max_count": self.max_count,
            "placements": [p.to_json() for p in self.placements],
            "available": self.available,
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True)
class PartitionInfo:
    """A live partition as a backend reports it."""

    native_id: str
    device_native_id: str
    profile: str
    kind: PartitionKind
    memory_bytes: int
    compute_units: int
    placement: Placement | None
    scope: Scope
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    #: False for a partition left half-made (an NVIDIA GPU instance without its
    #: compute instance): it holds capacity but cannot be a target
    complete: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", _freeze(self.attributes))


@dataclass(frozen=True)
class Telemetry:
    """Live readings of a device; a field is ``None`` where the vendor gives nothing."""

    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    utilization_percent: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "memory_used_bytes": self.memory_used_bytes,
            "memory_total_bytes": self.memory_total_bytes,
            "utilization_percent": self.utilization_percent,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
        }


@dataclass(frozen=True)
class ExecutionProvider:
    """One onnxruntime execution provider with its provider options."""

    name: str
    options: Mapping[str, str | int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _freeze(self.options))


@dataclass(frozen=True)
class OnnxPlacement:
    """How onnxruntime must be set up to run on a target.

    ``providers`` in priority order; ``intra_op_num_threads`` when the backend wants
    the CPU thread count pinned (for example, to a CPU sub-device's compute units).
    """

    providers: tuple[ExecutionProvider, ...]
    intra_op_num_threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "providers", tuple(self.providers))


@dataclass(frozen=True)
class BackendStatus:
    """Whether an installed backend plugin can run here, and why not."""

    name: str
    available: bool
    reason: str | None = None
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "available": self.available,
            "reason": self.reason,
            "version": self.version,
        }
