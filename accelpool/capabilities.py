"""The capability model: what a backend declares it supports.

Three states, as in SQLAlchemy's requirement model: a capability is either
*supported*, *unsupported*, or *not declared* (the backend says nothing).
Callers (and the conformance suite) decide from these which operations apply.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Support(enum.Enum):
    """Tri-state answer to "does this backend support X"."""

    SUPPORTED = "supported"
    UNSUPPORTED = "unsupported"
    NOT_DECLARED = "not declared"


class Capability(enum.StrEnum):
    """Capabilities a backend may declare. Names are stable strings."""

    #: devices can be discovered (every available backend should support this)
    DISCOVERY = "discovery"
    #: partitions of some kind can be created and destroyed
    PARTITION = "partition"
    PARTITION_MIG = "partition.mig"
    PARTITION_VGPU = "partition.vgpu"
    PARTITION_VNPU = "partition.vnpu"
    PARTITION_MIM = "partition.mim"
    PARTITION_SMLU = "partition.smlu"
    PARTITION_SUBDEVICE = "partition.subdevice"
    #: a generic hard split (memory and compute cut into isolated slices) for a vendor
    #: whose own kind is none of the above
    PARTITION_SLICE = "partition.slice"
    #: partitions persist in the device and are seen by every process
    PARTITION_DEVICE_SCOPE = "partition.device-scope"
    #: memory used, utilisation, temperature, power
    TELEMETRY = "telemetry"
    #: a visibility environment for the target can be named
    VISIBILITY = "visibility"
    #: ONNX models run on the target through onnxruntime
    SESSION_ONNX = "session.onnx"
    #: the simulator can inject faults (device lost, failing calls)
    FAULT_INJECTION = "fault-injection"
    #: MIG mode can be switched on and off
    MIG_MODE = "mig.mode"


@dataclass(frozen=True)
class Capabilities:
    """A backend's declared capabilities: a mapping of capability name to bool."""

    declared: Mapping[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "declared", MappingProxyType(dict(self.declared)))

    @classmethod
    def of(cls, supported: Iterable[str] = (), unsupported: Iterable[str] = ()) -> Capabilities:
        """Build from two lists of capability names."""
        decl = {str(c): True for c in supported}
        for c in unsupported:
            if str(c) in decl:
                raise ValueError(f"capability {c!s} declared both supported and unsupported")
            decl[str(c)] = False
        return cls(decl)

    def support(self, capability: str) -> Support:
        """Tri-state support of one capability."""
        value = self.declared.get(str(capability))
        if value is None:
            return Support.NOT_DECLARED
        return Support.SUPPORTED if value else Support.UNSUPPORTED

    def supports(self, capability: str) -> bool:
        """True only when the capability is declared supported."""
        return self.declared.get(str(capability)) is True

    def __iter__(self) -> Iterator[str]:
        return iter(self.declared)

    def to_json(self) -> dict[str, str]:
        return {k: self.support(k).value for k in sorted(self.declared)}
