"""Cambricon partitions: MIM instances and dynamic-SMLU shares.

Profiles, listing, creates with rollback of a half-made instance, and destroys
(including the walk CNDev's index-only MIM access needs), on top of
:class:`~accelpool_cambricon.discovery.MluDiscovery`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from accelpool.errors import (
    AccelPoolError,
    InsufficientCapacity,
    InvalidRequest,
    NotFound,
    UnsupportedOperation,
)
from accelpool.types import DeviceInfo, PartitionInfo, PartitionProfile, Placement
from accelpool_cambricon.discovery import ATTR, MIB, MluDiscovery, _Mlu
from accelpool_cambricon.library import (
    CNDEV_ERROR_IN_USE,
    CNDEV_ERROR_INVALID_ARGUMENT,
    CNDEV_ERROR_NOT_FOUND,
    CNDEV_ERROR_NOT_SUPPORTED,
    CndevError,
)

if TYPE_CHECKING:
    # Only for annotations: discovery on a host without CNDev must not import the
    # driver interface; the methods that need the card models import them.
    from accelpool_cambricon.driver import MimInstanceInfo, SmluInstanceInfo

#: Walks of the MIM instance list a destroy makes before giving up on a moving list.
_MIM_WALK_TRIES = 8


def _shape(quota: int, memory_bytes: int, cores: int) -> tuple[str, int]:
    """Profile name and compute units of an SMLU share (compute rounded down)."""
    from accelpool_cambricon import models

    return models.smlu_name(quota, memory_bytes // MIB), cores * quota // 100


class MluPartitions(MluDiscovery):
    """MIM and SMLU partitions of the chips :class:`MluDiscovery` lists."""

    # -- SPI: profiles -------------------------------------------------------------
    def profiles(self, device: DeviceInfo) -> Sequence[PartitionProfile]:
        mlu = self._mlu(device)
        self._alive(mlu)
        if mlu.mode == "mim":
            return [p for p, _ in self._mim_profiles(mlu)]
        if mlu.mode == "smlu":
            return self._smlu_profiles(mlu)
        return []

    def _mim_profiles(self, mlu: _Mlu) -> list[tuple[PartitionProfile, int]]:
        """MIM profiles of ``mlu`` with their CNDev profile ids."""
        from accelpool_cambricon import models

        drv, h = self.driver, mlu.handle
        doing = f"reading MIM profiles of {self.name}:{mlu.index}"
        out = []
        for ptype in range(models.MIM_PROFILE_TYPE_COUNT):
            try:
                info = drv.mim_profile_info(h, ptype)
            except CndevError as e:
                if e.code == CNDEV_ERROR_NOT_SUPPORTED:
                    continue  # this chip does not offer that profile type
                raise self._error(e, doing) from None
            pid = info.profile_id
            max_count = self._do(doing, partial(drv.mim_max_count, h, pid))
            remaining = self._do(doing, partial(drv.mim_remaining_capacity, h, pid))
            starts = self._do(doing, partial(drv.mim_possible_placements, h, pid))
            clusters = starts[0][1] if starts else 0
            profile = PartitionProfile(
                name=info.name,
                kind="mim",
                memory_bytes=info.memory_mb * MIB,
                compute_units=info.mlu_cores,
                max_count=max_count,
                placements=tuple(Placement(s, n) for s, n in starts),
                available=remaining,
                attributes={
                    ATTR + "profileId": pid,
                    ATTR + "clusters": clusters,
                    ATTR + "vpu": info.vpu,
                    ATTR + "jpu": info.jpu,
                },
            )
            out.append((profile, pid))
        return out

    def _smlu_used(self, mlu: _Mlu) -> tuple[list[SmluInstanceInfo], dict[str, int]]:
        from accelpool.sim import allocator

        doing = f"reading SMLU instances of {self.name}:{mlu.index}"
        instances = self._do(doing, lambda: self.driver.all_smlu_instances(mlu.handle))
        free = allocator.remaining(
            self._smlu_total(mlu),
            [{"vcore": i.quota, "memory": i.memory_bytes} for i in instances],
        )
        return instances, free

    @staticmethod
    def _smlu_total(mlu: _Mlu) -> dict[str, int]:
        from accelpool_cambricon import models

        return {"vcore": models.SMLU_VCORE_UNITS, "memory": mlu.info.memory_bytes}

    def _smlu_profiles(self, mlu: _Mlu) -> list[PartitionProfile]:
        from accelpool.sim import allocator
        from accelpool_cambricon import models

        _, free = self._smlu_used(mlu)
        total = self._smlu_total(mlu)
        out = []
        for quota, memory_mb in models.smlu_ladder(mlu.info.memory_bytes // MIB):
            need = {"vcore": quota, "memory": memory_mb * MIB}
            name, compute = _shape(quota, memory_mb * MIB, mlu.info.compute_units)
            out.append(
                PartitionProfile(
                    name=name,
                    kind="smlu",
                    memory_bytes=memory_mb * MIB,
                    compute_units=compute,
                    max_count=allocator.fit_count(total, need),
                    available=allocator.fit_count(free, need),
                    attributes={ATTR + "mluQuota": quota, ATTR + "memoryMiB": memory_mb},
                )
            )
        return out

    # -- SPI: partitions -------------------------------------------------------------
    def _mim_partition(self, mlu: _Mlu, i: MimInstanceInfo) -> PartitionInfo:
        return PartitionInfo(
            native_id=f"{mlu.info.native_id}-mim-{i.uuid}",
            device_native_id=mlu.info.native_id,
            profile=i.profile_name,
            kind="mim",
            memory_bytes=i.memory_mb * MIB,
            compute_units=i.mlu_cores,
            placement=Placement(i.start, i.size),
            scope="device",
            attributes={
                ATTR + "instanceID": i.instance_id,
                ATTR + "profileId": i.profile_id,
                ATTR + "instanceName": i.instance_name,
                ATTR + "devNode": i.dev_node,
                ATTR + "ipcmDevNode": i.ipcm_dev_node,
            },
        )

    def _smlu_partition(self, mlu: _Mlu, i: SmluInstanceInfo) -> PartitionInfo:
        name, compute = _shape(i.quota, i.memory_bytes, mlu.info.compute_units)
        return PartitionInfo(
            native_id=f"{mlu.info.native_id}-smlu-{i.uuid}",
            device_native_id=mlu.info.native_id,
            profile=name,
            kind="smlu",
            memory_bytes=i.memory_bytes,
            compute_units=compute,
            placement=None,
            scope="device",
            attributes={
                ATTR + "instanceID": i.instance_id,
                ATTR + "profileId": i.profile_id,
                ATTR + "mluQuota": i.quota,
                ATTR + "instanceName": i.instance_name,
                ATTR + "devNode": i.dev_node,
            },
        )

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        mlu = self._mlu(device)
        self._alive(mlu)
        doing = f"listing instances of {self.name}:{mlu.index}"
        if mlu.mode == "mim":
            mims = self._do(doing, lambda: self.driver.all_mim_instances(mlu.handle))
            return [self._mim_partition(mlu, i) for i in mims]
        if mlu.mode == "smlu":
            smlus = self._do(doing, lambda: self.driver.all_smlu_instances(mlu.handle))
            return [self._smlu_partition(mlu, i) for i in smlus]
        return []

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        mlu = self._mlu(device)
        self._alive(mlu)
        if not isinstance(profile, str):
            raise InvalidRequest(f"a profile is a name such as '2m.8gb', not {profile!r}")
        if mlu.mode == "mim":
            return self._create_mim(mlu, profile, placement)
        if mlu.mode == "smlu":
            return self._create_smlu(mlu, profile, placement)
        raise UnsupportedOperation(
            f"{self.name}:{mlu.index} is in neither MIM nor SMLU mode, so it cannot be "
            "partitioned; enable one with cnmon and restart the driver"
        )

    @staticmethod
    def _instance_name() -> str:
        import uuid

        return f"accelpool-{uuid.uuid4().hex[:12]}"

    def _create_mim(self, mlu: _Mlu, profile: str, placement: int | None) -> PartitionInfo:
        drv, h = self.driver, mlu.handle
        where = f"MIM instance {profile} on {self.name}:{mlu.index}"
        known = self._mim_profiles(mlu)
        match = [(p, pid) for p, pid in known if p.name == profile]
        if not match:
            raise InvalidRequest(
                f"{mlu.info.model} has no MIM profile {profile!r}; profiles: "
                + ", ".join(p.name for p, _ in known)
            )
        prof, pid = match[0]
        spot: tuple[int, int] | None = None
        if placement is not None:
            offered = [p.start for p in prof.placements]
            if placement not in offered:
                raise InvalidRequest(
                    f"profile {profile} cannot start at cluster {placement}; placements: "
                    + ", ".join(map(str, offered))
                )
            size = prof.placements[0].size
            mims = self._do(f"creating {where}", lambda: drv.all_mim_instances(h))
            taken = [i for i in mims if i.start < placement + size and placement < i.start + i.size]
            if taken:
                raise InsufficientCapacity(
                    f"cannot create {where} at cluster {placement}: clusters "
                    f"[{placement}, {placement + size}) are held by {taken[0].profile_name} "
                    "instance(s); pick a free placement or destroy the instance"
                )
            spot = (placement, size)
        if not prof.available:
            raise InsufficientCapacity(
                f"cannot create {where}: no free clusters or memory slices left for it; "
                "destroy an instance or pick a smaller profile"
            )
        handle = self._do(
            f"creating {where}",
            lambda: drv.create_mim(h, pid, self._instance_name(), spot),
            context="create",
        )
        try:
            info = drv.mim_instance_info(handle)
        except BaseException as e:
            # Step two failed: take the instance away again so nothing is left behind.
            self._undo(f"creating {where}", lambda: drv.destroy_mim(handle))
            if isinstance(e, CndevError):
                raise self._error(
                    e, f"created {where} but could not read it back (it was destroyed again)"
                ) from None
            raise
        return self._mim_partition(mlu, info)

    def _undo(self, doing: str, call: Callable[[], None]) -> None:
        try:
            call()
        except CndevError as e:
            raise AccelPoolError(
                f"{doing} failed half way and could not be undone; remove the leftover with cnmon",
                vendor_code=e.code,
                vendor_message=e.vendor_message,
            ) from None

    def _create_smlu(self, mlu: _Mlu, profile: str, placement: int | None) -> PartitionInfo:
        from accelpool.sim import allocator
        from accelpool_cambricon import models

        drv, h = self.driver, mlu.handle
        shares = ", ".join(p.name for p in self._smlu_profiles(mlu))
        parsed = models.parse_smlu_name(profile)
        if parsed is None:
            raise InvalidRequest(
                f"{profile!r} is not an SMLU share; name one as smlu-<percent>-<memory>, "
                f"memory in gb or mb (e.g. {shares})"
            )
        quota, memory_mb = parsed
        if not 0 < quota <= models.SMLU_VCORE_UNITS:
            raise InvalidRequest(f"SMLU share {profile}: the percent must be 1 to 100")
        unit = models.SMLU_MEMORY_UNIT_MB
        if memory_mb <= 0 or memory_mb % unit or memory_mb * MIB > mlu.info.memory_bytes:
            raise InvalidRequest(
                f"SMLU share {profile}: memory must be a positive multiple of {unit} MiB, at "
                f"most the device's {mlu.info.memory_bytes // MIB} MiB"
            )
        if placement is not None:
            raise InvalidRequest("SMLU shares take no placement; create one without it")
        where = f"SMLU share {profile} on {self.name}:{mlu.index}"
        need = {"vcore": quota, "memory": memory_mb * MIB}
        _, free = self._smlu_used(mlu)
        if allocator.shortfall(free, need):
            raise InsufficientCapacity(
                f"cannot create {where}: {free['vcore']}% of compute and "
                f"{max(0, free['memory']) // MIB} MiB are free; destroy a share or ask for less"
            )
        pid = self._do(
            f"creating {where}",
            lambda: drv.create_smlu_profile(h, quota, memory_mb * MIB),
            context="create",
        )
        try:
            handle = drv.create_smlu_instance(h, pid, self._instance_name())
        except BaseException as e:
            # Step two failed: the SMLU profile made in step one goes too.
            self._undo(f"creating {where}", lambda: drv.destroy_smlu_profile(h, pid))
            if isinstance(e, CndevError):
                raise self._error(e, f"creating {where} (its profile was removed)") from None
            raise
        try:
            info = drv.smlu_instance_info(handle)
        except BaseException as e:
            self._undo(f"creating {where}", lambda: drv.destroy_smlu_instance(handle))
            self._undo(f"creating {where}", lambda: drv.destroy_smlu_profile(h, pid))
            if isinstance(e, CndevError):
                raise self._error(e, f"created {where} but could not read it back") from None
            raise
        return self._smlu_partition(mlu, info)

    def _instance(self, partition: PartitionInfo) -> tuple[_Mlu, str, str]:
        """``(mlu, kind, instance uuid)`` of a partition id; NotFound for a foreign id."""
        mlu = self._entry(partition.device_native_id)
        prefix = mlu.info.native_id + "-"
        rest = partition.native_id.removeprefix(prefix)
        kind, _, inst = rest.partition("-")
        if not partition.native_id.startswith(prefix) or kind not in ("mim", "smlu") or not inst:
            raise NotFound(f"no Cambricon instance {partition.native_id!r}")
        return mlu, kind, inst

    def destroy_partition(self, partition: PartitionInfo) -> None:
        mlu, kind, inst = self._instance(partition)
        self._alive(mlu)
        drv, h = self.driver, mlu.handle
        doing = f"destroying {partition.native_id}"
        gone = NotFound(
            f"no Cambricon instance {partition.native_id}: it no longer exists (already destroyed?)"
        )
        if kind == "mim" and mlu.mode == "mim":
            # CNDev reaches a MIM instance only by index, and a destroy racing with this
            # one shifts the indexes under the walk: walk again until the instance is
            # found by handle (handles do not shift) or a fresh listing no longer has it.
            for _ in range(_MIM_WALK_TRIES):
                listed = self._do(doing, lambda: drv.all_mim_instances(h))
                if all(m.uuid != inst for m in listed):
                    raise gone
                for index in range(len(listed)):
                    try:
                        mi = drv.mim_instance_by_index(h, index)
                        uuid = drv.mim_instance_info(mi).uuid
                    except CndevError as e:
                        if e.code in (CNDEV_ERROR_NOT_FOUND, CNDEV_ERROR_INVALID_ARGUMENT):
                            break  # the listing shrank under the walk: walk again
                        raise self._error(e, doing) from None
                    if uuid == inst:
                        self._destroy(doing, partial(drv.destroy_mim, mi), gone)
                        return
            raise AccelPoolError(
                f"{doing}: the MIM instance list kept changing under {_MIM_WALK_TRIES} walks; "
                "retry the destroy"
            )
        if kind == "smlu" and mlu.mode == "smlu":
            for i in self._do(doing, lambda: drv.all_smlu_instances(h)):
                if i.uuid != inst:
                    continue
                mi = drv.smlu_instance_handle(h, i.instance_id)
                try:
                    check = drv.smlu_instance_info(mi)
                except CndevError:
                    check = None
                if check is None or check.uuid != inst:
                    raise AccelPoolError(
                        f"{doing}: cannot find the CNDev handle of SMLU instance "
                        f"{i.instance_id}; destroy it with cnmon"
                    )
                self._destroy(doing, partial(drv.destroy_smlu_instance, mi), gone)
                self._drop_smlu_profile(mlu, i.profile_id)
                return
            raise gone
        raise gone

    def _destroy(self, doing: str, call: Callable[[], None], gone: NotFound) -> None:
        try:
            call()
        except CndevError as e:
            if e.code in (CNDEV_ERROR_NOT_FOUND, CNDEV_ERROR_INVALID_ARGUMENT):
                raise gone from None
            raise self._error(e, doing) from None

    def _drop_smlu_profile(self, mlu: _Mlu, profile_id: int) -> None:
        # The profile was made for this instance; remove it unless another uses it.
        drv = self.driver
        try:
            if any(i.profile_id == profile_id for i in drv.all_smlu_instances(mlu.handle)):
                return
            drv.destroy_smlu_profile(mlu.handle, profile_id)
        except CndevError as e:
            if e.code not in (CNDEV_ERROR_NOT_FOUND, CNDEV_ERROR_IN_USE):
                raise self._error(e, f"removing SMLU profile {profile_id}") from None
