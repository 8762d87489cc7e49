"""What a container needs to use one target: environment, device nodes, mounts.

A backend names its container edits through :meth:`accelpool.spi.Backend.container_edits`
(optional: the default is the target's visibility environment and no device node).
Integrations that start containers (a Kubernetes DRA driver writing CDI specs, a
container runtime hook) read them through :func:`container_edits`:

>>> from accelpool.container import container_edits
>>> edits = container_edits(inv.device("nvidia:0"))
>>> [n.path for n in edits.device_nodes]          # ['/dev/nvidia0']
>>> [n.path for n in edits.shared_device_nodes]   # ['/dev/nvidiactl', '/dev/nvidia-uvm', ...]

``path`` is the path inside the container; ``host_path`` where the node is on the host
(the same path on real hardware, a file under the fleet's folder when simulated).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from accelpool.errors import AccelPoolError

if TYPE_CHECKING:
    from accelpool.inventory import Device, Partition
    from accelpool.spi import Backend

__all__ = ["ContainerEdits", "DeviceNode", "Mount", "container_edits", "device_root", "node"]


@dataclass(frozen=True)
class DeviceNode:
    """One device node to create in the container."""

    path: str
    host_path: str | None = None
    permissions: str = "rw"


@dataclass(frozen=True)
class Mount:
    """One bind mount into the container."""

    host_path: str
    container_path: str
    options: tuple[str, ...] = ("ro", "nosuid", "nodev", "bind")


@dataclass(frozen=True)
class ContainerEdits:
    """The edits that give a container exactly one target.

    ``device_nodes`` belong to this target; ``shared_device_nodes`` are the control
    nodes every target of the backend needs (``/dev/nvidiactl``), which a CDI spec puts
    in its spec-wide edits.
    """

    env: Mapping[str, str] = field(default_factory=dict)
    device_nodes: tuple[DeviceNode, ...] = ()
    shared_device_nodes: tuple[DeviceNode, ...] = ()
    mounts: tuple[Mount, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        object.__setattr__(self, "device_nodes", tuple(self.device_nodes))
        object.__setattr__(self, "shared_device_nodes", tuple(self.shared_device_nodes))
        object.__setattr__(self, "mounts", tuple(self.mounts))


def device_root(backend: Backend) -> Path:
    """Where the backend's device nodes are on the host: ``/`` on real hardware, the
    backend's folder of the simulated fleet under ``--sim``."""
    sim = backend.context.sim
    return Path("/") if sim is None else sim.root


def node(backend: Backend, path: str, permissions: str = "rw") -> DeviceNode:
    """A device node at ``path`` in the container, found under :func:`device_root`."""
    root = device_root(backend)
    host = path if root == Path("/") else str(root / path.lstrip("/"))
    return DeviceNode(path=path, host_path=host, permissions=permissions)


def edits_from_env(env: Mapping[str, str], nodes: Sequence[DeviceNode] = ()) -> ContainerEdits:
    """The default edits: the visibility environment, and ``nodes`` if given."""
    return ContainerEdits(env=env, device_nodes=tuple(nodes))


def container_edits(target: Device | Partition) -> ContainerEdits:
    """The container edits of a public handle, errors mapped into accelpool's hierarchy."""
    from accelpool.registry import safe_call_error

    target._check_reachable()
    backend = target.backend_instance
    try:
        return backend.container_edits(target.info)
    except AccelPoolError:
        raise
    except Exception as e:
        raise safe_call_error(e, backend.name) from e
