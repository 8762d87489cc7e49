"""A simulated CNDev: MLU cards with MIM profiles and dynamic SMLU, behind :class:`CndevDriver`.

Each chip is in one mode, as a host is configured (``cnmon``): ``mim`` (Multi-Instance
MLU: instances of fixed profiles on contiguous MLU clusters, with memory slices),
``smlu`` (dynamic sMLU: a profile of compute percent and memory, then instances of it)
or ``default`` (no partitions). A fleet picks it per entry with ``options.mode``.

The simulator answers with CNDev's handles and return codes and enforces the rules:
MIM instances sit at aligned cluster ranges that never overlap and take memory slices;
SMLU instances never take more than 100 vcore units or the chip's memory; a create
that does not fit fails with ``CNDEV_ERROR_INSUFFICIENT_SPACE``. Handles follow the
layout the device plugin's mock library uses: a device handle is its index, an
instance handle ``(instance_id << 8) | device``.

State lives in the fleet's shared :class:`~accelpool.sim.state.StateStore` under the
backend's name. Identity calls keep answering for a lost chip; health, telemetry and
every MIM/SMLU call fail with ``CNDEV_ERROR_IN_PROBLEM``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from accelpool.sim import allocator
from accelpool.sim.section import StateSection
from accelpool.spi import SimContext
from accelpool_cambricon import models
from accelpool_cambricon.driver import (
    CNDEV_ERROR_DUPLICATE,
    CNDEV_ERROR_IN_PROBLEM,
    CNDEV_ERROR_IN_USE,
    CNDEV_ERROR_INSUFFICIENT_SPACE,
    CNDEV_ERROR_INVALID_ARGUMENT,
    CNDEV_ERROR_INVALID_DEVICE_ID,
    CNDEV_ERROR_NOT_FOUND,
    CNDEV_ERROR_NOT_SUPPORTED,
    CNDEV_ERROR_UNKNOWN,
    HEALTH_GOOD,
    CndevDriver,
    CndevError,
    CndevUnavailable,
    MemoryUsage,
    MimInstanceInfo,
    MimProfileInfo,
    SmluInstanceInfo,
    SmluProfileInfo,
)

SIM_VERSION = "3.9.0-sim"
KNOWN_OPTIONS = ("mode",)
#: MIM profile ids the simulated driver hands out: this base plus the profile type.
MIM_PROFILE_ID_BASE = 16
FAULT_DEVICE_LOST = "device-lost"
FAULT_CREATE_MIDWAY = "create-fails-midway"
MIB = 1 << 20


@dataclass(frozen=True)
class SimMlu:
    """One simulated chip (one cndev device)."""

    index: int
    card: int
    chip_on_card: int
    model: models.MluModel
    mode: str


def _uuid(seed: str) -> str:
    h = hashlib.sha256(seed.encode()).hexdigest()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class SimulatedCndev(CndevDriver):
    """CNDev over a simulated fleet (see the module docstring)."""

    def __init__(self, sim: SimContext, key: str = "cambricon") -> None:
        self._state = StateSection(sim.state, key)
        self._fleet = sim.fleet
        mlus: list[SimMlu] = []
        card = 0
        for entry in sim.devices:
            model = models.model(entry.model)
            if model is None:
                raise CndevUnavailable(
                    f"simulated fleet {sim.fleet!r} names unknown Cambricon model "
                    f"{entry.model!r}; known models: {', '.join(sorted(models.MODELS))}"
                )
            unknown = sorted(set(entry.options) - set(KNOWN_OPTIONS))
            if unknown:
                raise CndevUnavailable(
                    f"simulated fleet {sim.fleet!r}: Cambricon options {', '.join(unknown)} "
                    f"are not understood (known: {', '.join(KNOWN_OPTIONS)})"
                )
            mode = entry.options.get("mode", model.default_mode)
            if mode not in model.modes():
                raise CndevUnavailable(
                    f"simulated fleet {sim.fleet!r}: {model.product} cannot run in mode "
                    f"{mode!r} (modes: {', '.join(model.modes())})"
                )
            for _ in range(entry.count):
                for chip in range(model.chips_per_card):
                    mlus.append(SimMlu(len(mlus), card, chip, model, mode))
                card += 1
        self._mlus = mlus

    # -- state ---------------------------------------------------------------
    def _mlu(self, device: int, fn: str) -> SimMlu:
        if not 0 <= device < len(self._mlus):
            raise CndevError(CNDEV_ERROR_INVALID_DEVICE_ID, fn)
        return self._mlus[device]

    @staticmethod
    def _alive(mlu: SimMlu, state: dict[str, Any], fn: str) -> None:
        if mlu.index in state.get("faults", {}).get("lost", []):
            raise CndevError(CNDEV_ERROR_IN_PROBLEM, fn)

    def _live(self, device: int, fn: str, mode: str | None = None) -> tuple[SimMlu, dict[str, Any]]:
        mlu = self._mlu(device, fn)
        state = self._state.read()
        self._alive(mlu, state, fn)
        if mode is not None and mlu.mode != mode:
            raise CndevError(CNDEV_ERROR_NOT_SUPPORTED, fn)
        return mlu, state

    @staticmethod
    def _table(state: dict[str, Any], kind: str, mlu: SimMlu) -> dict[str, Any]:
        table: dict[str, Any] = state.get(kind, {}).get(str(mlu.index), {})
        return table

    def _handle(self, mi_handle: int, fn: str, kind: str) -> tuple[SimMlu, dict[str, Any], int]:
        device, instance_id = mi_handle & 0xFF, mi_handle >> 8
        mlu, state = self._live(device, fn, "mim" if kind == "mim" else "smlu")
        if str(instance_id) not in self._table(state, kind, mlu):
            raise CndevError(CNDEV_ERROR_NOT_FOUND, fn)
        return mlu, state, instance_id

    @staticmethod
    def _next_serial(state: dict[str, Any]) -> int:
        serial = int(state.get("serial", 0)) + 1
        state["serial"] = serial
        return serial

    @staticmethod
    def _consume(state: dict[str, Any], fault: str, index: int) -> bool:
        armed = state.get("faults", {}).get(fault, [])
        if index in armed:
            armed.remove(index)
            return True
        return False

    # -- identity ------------------------------------------------------------
    def init(self) -> None:
        """``cndevInit``: nothing to set up in a simulation."""

    def release(self) -> None:
        """``cndevRelease``."""

    def lib_version(self) -> str:
        return SIM_VERSION

    def device_count(self) -> int:
        return len(self._mlus)

    def device_handle(self, index: int) -> int:
        return self._mlu(index, "cndevGetDeviceHandleByIndex").index

    def uuid(self, device: int) -> str:
        mlu = self._mlu(device, "cndevGetUUID")
        return _uuid(f"{self._fleet}|cambricon|{mlu.index}")

    def card_name(self, device: int) -> int:
        return self._mlu(device, "cndevGetCardName").model.name_enum

    def card_name_string(self, device: int) -> str:
        return self._mlu(device, "cndevGetCardNameStringByDevId").model.product

    def card_sn(self, device: int) -> tuple[int, int]:
        mlu = self._mlu(device, "cndevGetCardSN")
        sn = int(hashlib.sha256(f"{self._fleet}|card|{mlu.card}".encode()).hexdigest()[:12], 16)
        board = int(hashlib.sha256(f"{self._fleet}|board".encode()).hexdigest()[:12], 16)
        return sn, board

    def memory_usage(self, device: int) -> MemoryUsage:
        return MemoryUsage(self._mlu(device, "cndevGetMemoryUsage").model.memory_mb, 0)

    def core_count(self, device: int) -> int:
        return self._mlu(device, "cndevGetCoreCount").model.mlu_cores

    def cluster_count(self, device: int) -> int:
        return self._mlu(device, "cndevGetClusterCount").model.clusters

    def mim_mode(self, device: int) -> bool:
        return self._mlu(device, "cndevGetMimMode").mode == "mim"

    def smlu_mode(self, device: int) -> bool:
        return self._mlu(device, "cndevGetSMLUMode").mode == "smlu"

    # -- health and telemetry --------------------------------------------------
    def health(self, device: int) -> int:
        self._live(device, "cndevGetCardHealthState")
        return HEALTH_GOOD

    def utilization(self, device: int) -> int:
        self._live(device, "cndevGetDeviceUtilizationInfo")
        return 0

    def temperature(self, device: int) -> int:
        mlu, _ = self._live(device, "cndevGetTemperatureInfo")
        return mlu.model.idle_temperature_c

    # -- MIM ---------------------------------------------------------------------
    def _spec(self, mlu: SimMlu, profile_id: int, fn: str) -> models.MimProfileSpec:
        spec = mlu.model.mim_profile(profile_id - MIM_PROFILE_ID_BASE)
        if spec is None:
            raise CndevError(CNDEV_ERROR_INVALID_ARGUMENT, fn)
        return spec

    def _mim_occupied(
        self, mlu: SimMlu, state: dict[str, Any]
    ) -> tuple[list[tuple[int, int]], int]:
        ranges, slices = [], 0
        for inst in self._table(state, "mim", mlu).values():
            spec = mlu.model.mim_profile(inst["profile_type"])
            ranges.append((inst["start"], inst["size"]))
            slices += spec.memory_slices if spec else 0
        return ranges, slices

    def _mim_free(
        self, mlu: SimMlu, state: dict[str, Any], spec: models.MimProfileSpec
    ) -> tuple[tuple[int, ...], int]:
        ranges, slices = self._mim_occupied(mlu, state)
        starts = allocator.free_starts(mlu.model.clusters, spec.clusters, ranges)
        return starts, mlu.model.clusters - slices

    def mim_profile_info(self, device: int, profile_type: int) -> MimProfileInfo:
        fn = "cndevGetMluInstanceProfileInfo"
        mlu, _ = self._live(device, fn, "mim")
        spec = mlu.model.mim_profile(profile_type)
        if spec is None:
            raise CndevError(CNDEV_ERROR_NOT_SUPPORTED, fn)
        return MimProfileInfo(
            MIM_PROFILE_ID_BASE + profile_type, spec.mlu_cores, 0, 0, spec.memory_mb, spec.name
        )

    def mim_max_count(self, device: int, profile_id: int) -> int:
        fn = "cndevGetMaxMluInstanceCount"
        mlu, _ = self._live(device, fn, "mim")
        spec = self._spec(mlu, profile_id, fn)
        starts = models.mim_placements(mlu.model.clusters, spec.clusters)
        return min(len(starts), mlu.model.clusters // spec.memory_slices)

    def mim_remaining_capacity(self, device: int, profile_id: int) -> int:
        fn = "cndevGetMluInstanceRemainingCapacity"
        mlu, state = self._live(device, fn, "mim")
        spec = self._spec(mlu, profile_id, fn)
        starts, free_slices = self._mim_free(mlu, state, spec)
        return max(0, min(len(starts), free_slices // spec.memory_slices))

    def mim_possible_placements(self, device: int, profile_id: int) -> list[tuple[int, int]]:
        fn = "cndevGetMluInstancePossiblePlacements"
        mlu, _ = self._live(device, fn, "mim")
        spec = self._spec(mlu, profile_id, fn)
        return [
            (s, spec.clusters) for s in models.mim_placements(mlu.model.clusters, spec.clusters)
        ]

    def create_mim(
        self, device: int, profile_id: int, name: str, placement: tuple[int, int] | None = None
    ) -> int:
        fn = (
            "cndevCreateMluInstanceByProfileId"
            if placement is None
            else "cndevCreateMluInstanceByProfileIdWithPlacement"
        )
        mlu = self._mlu(device, fn)
        with self._state.write() as state:
            self._alive(mlu, state, fn)
            if mlu.mode != "mim":
                raise CndevError(CNDEV_ERROR_NOT_SUPPORTED, fn)
            spec = self._spec(mlu, profile_id, fn)
            starts, free_slices = self._mim_free(mlu, state, spec)
            if placement is not None:
                start, size = placement
                if size != spec.clusters or start not in models.mim_placements(
                    mlu.model.clusters, size
                ):
                    raise CndevError(CNDEV_ERROR_INVALID_ARGUMENT, fn)
                starts = (start,) if start in starts else ()
            if not starts or free_slices < spec.memory_slices:
                raise CndevError(CNDEV_ERROR_INSUFFICIENT_SPACE, fn)
            table = state.setdefault("mim", {}).setdefault(str(mlu.index), {})
            if name and any(i["name"] == name for i in table.values()):
                raise CndevError(CNDEV_ERROR_DUPLICATE, fn)
            instance_id = min(set(range(1, len(table) + 2)) - {int(i) for i in table})
            serial = self._next_serial(state)
            table[str(instance_id)] = {
                "profile_type": spec.profile_type,
                "start": starts[0],
                "size": spec.clusters,
                "uuid": _uuid(f"{self._fleet}|cambricon|{mlu.index}|mim|{serial}"),
                "name": name or f"mi{instance_id}",
            }
            handle = (instance_id << 8) | mlu.index
            if self._consume(state, "create_midway", mlu.index):
                # The instance exists now; the backend's next step on it fails once.
                state["faults"].setdefault("poisoned", []).append(handle)
        return handle

    def _mim_info(self, mlu: SimMlu, instance_id: int, inst: dict[str, Any]) -> MimInstanceInfo:
        spec = mlu.model.mim_profile(inst["profile_type"])
        assert spec is not None
        return MimInstanceInfo(
            parent=mlu.index,
            instance_id=instance_id,
            profile_id=MIM_PROFILE_ID_BASE + spec.profile_type,
            uuid=inst["uuid"],
            start=inst["start"],
            size=inst["size"],
            mlu_cores=spec.mlu_cores,
            memory_mb=spec.memory_mb,
            profile_name=spec.name,
            dev_node=f"/dev/cambricon-caps/cap_dev{mlu.index}_mi{instance_id}",
            ipcm_dev_node=f"/dev/cambricon_ipcm{mlu.index}",
            instance_name=inst["name"],
        )

    def mim_instance_info(self, mi_handle: int) -> MimInstanceInfo:
        fn = "cndevGetMluInstanceInfo"
        mlu, state, instance_id = self._handle(mi_handle, fn, "mim")
        if mi_handle in state.get("faults", {}).get("poisoned", []):
            with self._state.write() as w:
                w["faults"]["poisoned"].remove(mi_handle)
            raise CndevError(CNDEV_ERROR_UNKNOWN, fn)
        return self._mim_info(mlu, instance_id, self._table(state, "mim", mlu)[str(instance_id)])

    def all_mim_instances(self, device: int) -> list[MimInstanceInfo]:
        mlu, state = self._live(device, "cndevGetAllMluInstanceInfo", "mim")
        table = self._table(state, "mim", mlu)
        return [self._mim_info(mlu, int(i), table[i]) for i in sorted(table, key=int)]

    def mim_instance_by_index(self, device: int, index: int) -> int:
        fn = "cndevGetMluInstanceByIndex"
        mlu, state = self._live(device, fn, "mim")
        ids = sorted(int(i) for i in self._table(state, "mim", mlu))
        if not 0 <= index < len(ids):
            raise CndevError(CNDEV_ERROR_NOT_FOUND, fn)
        return (ids[index] << 8) | mlu.index

    def destroy_mim(self, mi_handle: int) -> None:
        fn = "cndevDestroyMluInstanceByHandle"
        device, instance_id = mi_handle & 0xFF, mi_handle >> 8
        mlu = self._mlu(device, fn)
        with self._state.write() as state:
            self._alive(mlu, state, fn)
            table = state.get("mim", {}).get(str(mlu.index), {})
            if str(instance_id) not in table:
                raise CndevError(CNDEV_ERROR_NOT_FOUND, fn)
            del table[str(instance_id)]
            poisoned = state.get("faults", {}).get("poisoned", [])
            if mi_handle in poisoned:
                poisoned.remove(mi_handle)

    # -- dynamic SMLU --------------------------------------------------------------
    def _smlu_free(self, mlu: SimMlu, state: dict[str, Any]) -> dict[str, int]:
        profiles = self._table(state, "smlu_profiles", mlu)
        used = []
        for inst in self._table(state, "smlu", mlu).values():
            p = profiles.get(str(inst["profile_id"]))
            if p is not None:
                used.append({"vcore": p["quota"], "memory": p["memory_bytes"]})
        total = {
            "vcore": models.SMLU_VCORE_UNITS,
            "memory": mlu.model.memory_mb * MIB,
        }
        return allocator.remaining(total, used)

    def create_smlu_profile(self, device: int, quota: int, memory_bytes: int) -> int:
        fn = "cndevCreateSMluProfileInfo"
        mlu = self._mlu(device, fn)
        unit = models.SMLU_MEMORY_UNIT_MB * MIB
        if (
            not 0 < quota <= models.SMLU_VCORE_UNITS
            or memory_bytes <= 0
            or memory_bytes % unit
            or memory_bytes > mlu.model.memory_mb * MIB
        ):
            raise CndevError(CNDEV_ERROR_INVALID_ARGUMENT, fn)
        with self._state.write() as state:
            self._alive(mlu, state, fn)
            if mlu.mode != "smlu":
                raise CndevError(CNDEV_ERROR_NOT_SUPPORTED, fn)
            profile_id = self._next_serial(state)
            state.setdefault("smlu_profiles", {}).setdefault(str(mlu.index), {})[
                str(profile_id)
            ] = {"quota": quota, "memory_bytes": memory_bytes}
        return profile_id

    def destroy_smlu_profile(self, device: int, profile_id: int) -> None:
        fn = "cndevDestroySMluProfileInfo"
        mlu = self._mlu(device, fn)
        with self._state.write() as state:
            self._alive(mlu, state, fn)
            profiles = state.get("smlu_profiles", {}).get(str(mlu.index), {})
            if str(profile_id) not in profiles:
                raise CndevError(CNDEV_ERROR_NOT_FOUND, fn)
            if any(i["profile_id"] == profile_id for i in self._table(state, "smlu", mlu).values()):
                raise CndevError(CNDEV_ERROR_IN_USE, fn)
            del profiles[str(profile_id)]

    def smlu_profile_ids(self, device: int) -> list[int]:
        mlu, state = self._live(device, "cndevGetSMluProfileIdInfo", "smlu")
        return sorted(int(p) for p in self._table(state, "smlu_profiles", mlu))

    def smlu_profile_info(self, device: int, profile_id: int) -> SmluProfileInfo:
        fn = "cndevGetSMluProfileInfo"
        mlu, state = self._live(device, fn, "smlu")
        p = self._table(state, "smlu_profiles", mlu).get(str(profile_id))
        if p is None:
            raise CndevError(CNDEV_ERROR_NOT_FOUND, fn)
        need = {"vcore": p["quota"], "memory": p["memory_bytes"]}
        total = {"vcore": models.SMLU_VCORE_UNITS, "memory": mlu.model.memory_mb * MIB}
        return SmluProfileInfo(
            profile_id,
            models.smlu_name(p["quota"], p["memory_bytes"] // MIB),
            allocator.fit_count(total, need),
            allocator.fit_count(self._smlu_free(mlu, state), need),
            p["quota"],
            p["memory_bytes"],
        )

    def create_smlu_instance(self, device: int, profile_id: int, name: str) -> int:
        fn = "cndevCreateSMluInstanceByProfileId"
        mlu = self._mlu(device, fn)
        with self._state.write() as state:
            self._alive(mlu, state, fn)
            if mlu.mode != "smlu":
                raise CndevError(CNDEV_ERROR_NOT_SUPPORTED, fn)
            p = self._table(state, "smlu_profiles", mlu).get(str(profile_id))
            if p is None:
                raise CndevError(CNDEV_ERROR_NOT_FOUND, fn)
            handle: int | None = None
            # An armed fault: the profile (step one) stays, this instance (step two)
            # never comes; consuming the fault must be saved, so raise after the block.
            if not self._consume(state, "create_midway", mlu.index):
                need = {"vcore": p["quota"], "memory": p["memory_bytes"]}
                if not allocator.fits(self._smlu_free(mlu, state), need):
                    raise CndevError(CNDEV_ERROR_INSUFFICIENT_SPACE, fn)
                table = state.setdefault("smlu", {}).setdefault(str(mlu.index), {})
                if name and any(i["name"] == name for i in table.values()):
                    raise CndevError(CNDEV_ERROR_DUPLICATE, fn)
                instance_id = min(set(range(1, len(table) + 2)) - {int(i) for i in table})
                serial = self._next_serial(state)
                table[str(instance_id)] = {
                    "profile_id": profile_id,
                    "uuid": _uuid(f"{self._fleet}|cambricon|{mlu.index}|smlu|{serial}"),
                    "name": name or f"smlu{instance_id}",
                }
                handle = (instance_id << 8) | mlu.index
        if handle is None:
            raise CndevError(CNDEV_ERROR_UNKNOWN, fn)
        return handle

    def _smlu_info(
        self, mlu: SimMlu, state: dict[str, Any], instance_id: int, inst: dict[str, Any]
    ) -> SmluInstanceInfo:
        p = self._table(state, "smlu_profiles", mlu).get(str(inst["profile_id"]), {})
        quota, memory = int(p.get("quota", 0)), int(p.get("memory_bytes", 0))
        return SmluInstanceInfo(
            profile_id=inst["profile_id"],
            instance_id=instance_id,
            uuid=inst["uuid"],
            profile_name=models.smlu_name(quota, memory // MIB),
            instance_name=inst["name"],
            dev_node=f"/dev/cambricon-caps/cap_dev{mlu.index}_mi{instance_id}",
            quota=quota,
            memory_bytes=memory,
        )

    def smlu_instance_info(self, mi_handle: int) -> SmluInstanceInfo:
        mlu, state, instance_id = self._handle(mi_handle, "cndevGetSMluInstanceInfo", "smlu")
        inst = self._table(state, "smlu", mlu)[str(instance_id)]
        return self._smlu_info(mlu, state, instance_id, inst)

    def all_smlu_instances(self, device: int) -> list[SmluInstanceInfo]:
        mlu, state = self._live(device, "cndevGetAllSMluInstanceInfo", "smlu")
        table = self._table(state, "smlu", mlu)
        return [self._smlu_info(mlu, state, int(i), table[i]) for i in sorted(table, key=int)]

    def destroy_smlu_instance(self, mi_handle: int) -> None:
        fn = "cndevDestroySMluInstanceByHandle"
        device, instance_id = mi_handle & 0xFF, mi_handle >> 8
        mlu = self._mlu(device, fn)
        with self._state.write() as state:
            self._alive(mlu, state, fn)
            table = state.get("smlu", {}).get(str(mlu.index), {})
            if str(instance_id) not in table:
                raise CndevError(CNDEV_ERROR_NOT_FOUND, fn)
            del table[str(instance_id)]

    # -- faults (simulator only) -------------------------------------------------
    def inject_fault(self, fault: str, index: int) -> None:
        """Make chip ``index`` misbehave from now on, in every process."""
        self._mlu(index, "inject_fault")
        name = {FAULT_DEVICE_LOST: "lost", FAULT_CREATE_MIDWAY: "create_midway"}[fault]
        with self._state.write() as state:
            listed = state.setdefault("faults", {}).setdefault(name, [])
            if index not in listed:
                listed.append(index)

    def clear_faults(self) -> None:
        with self._state.write() as state:
            state.pop("faults", None)
