"""Cambricon visibility: ``MLU_VISIBLE_DEVICES``, ``VIRTUAL_DEVICES`` and container edits.

Whole MLUs are named by index; MIM and SMLU instances by the device nodes the
Cambricon container runtime mounts for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from accelpool.errors import InvalidRequest, NotFound
from accelpool.spi import Target
from accelpool.types import DeviceInfo, PartitionInfo
from accelpool_cambricon.discovery import ATTR, _Mlu
from accelpool_cambricon.partitions import MluPartitions

if TYPE_CHECKING:
    # Only for annotations: discovery on a host without CNDev must not import the
    # driver interface; the methods that need the card models import them.
    from accelpool.container import ContainerEdits

#: The per-process MLU filter (device ordinals, like CUDA_VISIBLE_DEVICES).
MLU_VISIBLE = "MLU_VISIBLE_DEVICES"
#: Read by the Cambricon container runtime: the device nodes of MIM/SMLU instances.
VIRTUAL_DEVICES = "VIRTUAL_DEVICES"


class MluVisibility(MluPartitions):
    """What a process or container must be given to see an MLU or an instance."""

    def _node_paths(self, mlu: _Mlu, partition: PartitionInfo) -> str:
        attrs = partition.attributes
        ipcm = attrs.get(ATTR + "ipcmDevNode") or f"/dev/cambricon_ipcm{mlu.index}"
        return f"/dev/cambricon_dev{mlu.index},{ipcm},{attrs.get(ATTR + 'devNode')}"

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        """Whole devices: ``MLU_VISIBLE_DEVICES`` with their indexes.

        MIM and SMLU instances are reached through the Cambricon container runtime,
        which mounts the device nodes named in ``VIRTUAL_DEVICES`` (as the Cambricon
        device plugin sets it) and nothing else; inside, they are MLU 0, 1, ...
        """
        if not targets:
            raise InvalidRequest("name at least one Cambricon device or instance to make visible")
        devices: list[_Mlu] = []
        instances: list[tuple[_Mlu, PartitionInfo]] = []
        for t in targets:
            if isinstance(t, PartitionInfo):
                instances.append((self._live_instance(t), t))
            elif isinstance(t, DeviceInfo):
                mlu = self._mlu(t)
                self._alive(mlu)
                devices.append(mlu)
            else:
                raise InvalidRequest(f"not a device or partition: {t!r}")
        names = [m.index for m in devices] + [p.native_id for _, p in instances]
        if len(set(names)) != len(names):
            raise InvalidRequest("a device or instance is named twice; name each target once")
        if devices and instances:
            raise InvalidRequest(
                "whole MLUs and MIM/SMLU instances cannot be made visible together; ask for "
                "devices or for instances"
            )
        if devices:
            return {MLU_VISIBLE: ",".join(str(m.index) for m in sorted(devices, key=_index))}
        return {
            VIRTUAL_DEVICES: ";".join(self._node_paths(m, p) for m, p in instances),
            MLU_VISIBLE: ",".join(str(i) for i in range(len(instances))),
        }

    def _live_instance(self, partition: PartitionInfo) -> _Mlu:
        mlu, _, _ = self._instance(partition)
        self._alive(mlu)
        if partition.native_id not in {p.native_id for p in self.partitions(mlu.info)}:
            raise NotFound(
                f"no Cambricon instance {partition.native_id}: it no longer exists "
                "(already destroyed?)"
            )
        return mlu

    def container_edits(self, target: Target) -> ContainerEdits:
        """``/dev/cambricon_dev<N>`` and its IPC node for an MLU; for a MIM or SMLU
        instance the nodes the Cambricon runtime mounts for it; ``/dev/cambricon_ctl``."""
        from accelpool.container import ContainerEdits, node

        env = self.visibility_env([target])
        if isinstance(target, PartitionInfo):
            mlu = self._live_instance(target)
            paths = [p for p in self._node_paths(mlu, target).split(",") if p != "None"]
        else:
            mlu = self._mlu(target)
            paths = [f"/dev/cambricon_dev{mlu.index}", f"/dev/cambricon_ipcm{mlu.index}"]
        return ContainerEdits(
            env=env,
            device_nodes=tuple(node(self, p) for p in paths),
            shared_device_nodes=(node(self, "/dev/cambricon_ctl"),),
        )


def _index(m: _Mlu) -> int:
    return m.index
