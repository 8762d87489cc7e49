"""A simulated DCMI: Ascend chips with their real vNPU templates, behind :class:`DcmiDriver`.

The simulator answers the same calls, with the same ids and return codes, as
``libdcmi.so`` would on a host with the fleet's chips, and enforces the hard split the
way the driver does: a vNPU is created only from one of its chip's templates, each
template takes its AI cores, AI CPUs and memory out of the chip, and a create that
does not fit fails with ``DCMI_ERR_CODE_RESOURCE_OCCUPIED``. vNPU ids come from the
driver's documented range ``[phy*16+100, phy*16+107]``.

State (the vNPUs, injected faults) lives in the fleet's shared
:class:`~accelpool.sim.state.StateStore` under the backend's name, so every process
simulating the fleet sees one host. Identity calls (card list, chip info, die id,
memory size) keep answering for a lost device, as the driver's cached card table
does; health, telemetry and every vNPU call fail with ``DCMI_ERR_CODE_DEVICE_NOT_EXIST``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from accelpool.sim import allocator
from accelpool.sim.section import StateSection
from accelpool.spi import SimContext
from accelpool_ascend import models
from accelpool_ascend.driver import (
    ERR_DEVICE_NOT_EXIST,
    ERR_INNER_ERR,
    ERR_INVALID_DEVICE_ID,
    ERR_INVALID_PARAMETER,
    ERR_NOT_SUPPORT,
    ERR_RESOURCE_OCCUPIED,
    UTILIZATION_AICORE,
    VDEV_ID_AUTO,
    ChipInfo,
    DcmiDriver,
    DcmiError,
    DcmiUnavailable,
    HbmInfo,
    MemoryInfo,
    SocResource,
    VdevCreated,
    VdevInfo,
)

SIM_VERSION = "24.1.rc2-sim"
KNOWN_OPTIONS = ("chips_per_card",)
FAULT_DEVICE_LOST = "device-lost"
FAULT_CREATE_MIDWAY = "create-fails-midway"


@dataclass(frozen=True)
class SimChip:
    """One simulated chip: where it sits and what it is."""

    card_id: int
    device_id: int
    logic_id: int
    phy_id: int
    chip: models.AscendChip


def _chip_model(name: str) -> models.AscendChip | None:
    # Fleet files may name the chip as DCMI does (910B3) or as accelpool reports it.
    return models.chip(name.removeprefix("Ascend"))


class SimulatedDcmi(DcmiDriver):
    """DCMI over a simulated fleet (see the module docstring)."""

    def __init__(self, sim: SimContext, key: str = "ascend") -> None:
        self._state = StateSection(sim.state, key)
        self._fleet = sim.fleet
        chips: list[SimChip] = []
        card = 0
        for entry in sim.devices:
            model = _chip_model(entry.model)
            if model is None:
                raise DcmiUnavailable(
                    f"simulated fleet {sim.fleet!r} names unknown Ascend chip {entry.model!r}; "
                    f"known chips: {', '.join(sorted(models.CHIPS))}"
                )
            unknown = sorted(set(entry.options) - set(KNOWN_OPTIONS))
            if unknown:
                raise DcmiUnavailable(
                    f"simulated fleet {sim.fleet!r}: Ascend options {', '.join(unknown)} are "
                    f"not understood (known: {', '.join(KNOWN_OPTIONS)})"
                )
            per_card = entry.options.get("chips_per_card", 1)
            if not isinstance(per_card, int) or isinstance(per_card, bool) or per_card < 1:
                raise DcmiUnavailable(
                    f"simulated fleet {sim.fleet!r}: chips_per_card must be a positive integer"
                )
            for _ in range(entry.count):
                for dev in range(per_card):
                    logic = len(chips)
                    chips.append(SimChip(card, dev, logic, logic, model))
                card += 1
        self._chips = chips
        self._by_slot = {(c.card_id, c.device_id): c for c in chips}

    # -- state ---------------------------------------------------------------
    @staticmethod
    def _vdevs(state: dict[str, Any], logic: int) -> dict[str, Any]:
        vdevs: dict[str, Any] = state.get("vdevs", {}).get(str(logic), {})
        return vdevs

    def _chip(self, card_id: int, device_id: int, fn: str) -> SimChip:
        chip = self._by_slot.get((card_id, device_id))
        if chip is None:
            raise DcmiError(ERR_INVALID_DEVICE_ID, fn)
        return chip

    def _alive(self, chip: SimChip, state: dict[str, Any], fn: str) -> None:
        if chip.logic_id in state.get("faults", {}).get("lost", []):
            raise DcmiError(ERR_DEVICE_NOT_EXIST, fn)

    def _live_chip(self, card_id: int, device_id: int, fn: str) -> tuple[SimChip, dict[str, Any]]:
        chip = self._chip(card_id, device_id, fn)
        state = self._state.read()
        self._alive(chip, state, fn)
        return chip, state

    def _used(self, chip: SimChip, state: dict[str, Any]) -> list[dict[str, int]]:
        used = []
        for v in self._vdevs(state, chip.logic_id).values():
            t = chip.chip.template(v["template"])
            if t is not None:
                used.append(dict(chip.chip.need(t)))
        return used

    def _free(self, chip: SimChip, state: dict[str, Any]) -> dict[str, int]:
        return allocator.remaining(chip.chip.budget(), self._used(chip, state))

    # -- identity ------------------------------------------------------------
    def init(self) -> None:
        """``dcmi_init``: nothing to set up in a simulation."""

    def version(self) -> str:
        return SIM_VERSION

    def card_list(self) -> list[int]:
        return sorted({c.card_id for c in self._chips})

    def device_num_in_card(self, card_id: int) -> int:
        n = sum(1 for c in self._chips if c.card_id == card_id)
        if n == 0:
            raise DcmiError(ERR_INVALID_DEVICE_ID, "dcmi_get_device_num_in_card")
        return n

    def logic_id(self, card_id: int, device_id: int) -> int:
        return self._chip(card_id, device_id, "dcmi_get_device_logic_id").logic_id

    def phy_id_from_logic_id(self, logic_id: int) -> int:
        for c in self._chips:
            if c.logic_id == logic_id:
                return c.phy_id
        raise DcmiError(ERR_INVALID_DEVICE_ID, "dcmi_get_device_phyid_from_logicid")

    def chip_info(self, card_id: int, device_id: int) -> ChipInfo:
        m = self._chip(card_id, device_id, "dcmi_get_device_chip_info").chip
        return ChipInfo(m.chip_type, m.chip_name, m.chip_ver, m.aicore)

    def die_id(self, card_id: int, device_id: int, die_type: int = 1) -> tuple[int, ...]:
        chip = self._chip(card_id, device_id, "dcmi_get_device_die_v2")
        seed = f"{self._fleet}|ascend|die{die_type}|{chip.logic_id}".encode()
        digest = hashlib.sha256(seed).digest()
        return tuple(int.from_bytes(digest[i * 4 : i * 4 + 4], "big") for i in range(5))

    def memory_info(self, card_id: int, device_id: int) -> MemoryInfo:
        chip = self._chip(card_id, device_id, "dcmi_get_device_memory_info_v3")
        if chip.chip.hbm:
            # On 910-series chips this call reports the control CPU's DDR, not the HBM.
            return MemoryInfo(memory_size_mb=15360, memory_available_mb=12288, utilization=20)
        return MemoryInfo(chip.chip.memory_mb, chip.chip.memory_mb, 0)

    def hbm_info(self, card_id: int, device_id: int) -> HbmInfo:
        chip = self._chip(card_id, device_id, "dcmi_get_device_hbm_info")
        if not chip.chip.hbm:
            raise DcmiError(ERR_NOT_SUPPORT, "dcmi_get_device_hbm_info")
        return HbmInfo(chip.chip.memory_mb, 0, chip.chip.idle_temperature_c)

    # -- health and telemetry --------------------------------------------------
    def health(self, card_id: int, device_id: int) -> int:
        self._live_chip(card_id, device_id, "dcmi_get_device_health")
        return 0

    def utilization_rate(self, card_id: int, device_id: int, input_type: int) -> int:
        self._live_chip(card_id, device_id, "dcmi_get_device_utilization_rate")
        if input_type != UTILIZATION_AICORE:
            raise DcmiError(ERR_NOT_SUPPORT, "dcmi_get_device_utilization_rate")
        return 0

    def temperature(self, card_id: int, device_id: int) -> int:
        chip, _ = self._live_chip(card_id, device_id, "dcmi_get_device_temperature")
        return chip.chip.idle_temperature_c

    def power_decawatts(self, card_id: int, device_id: int) -> int:
        chip, _ = self._live_chip(card_id, device_id, "dcmi_get_device_power_info")
        return round(chip.chip.idle_power_w * 10)

    # -- vNPUs -------------------------------------------------------------------
    def create_vdevice(
        self, card_id: int, device_id: int, template_name: str, vdev_id: int = VDEV_ID_AUTO
    ) -> VdevCreated:
        fn = "dcmi_create_vdevice"
        chip = self._chip(card_id, device_id, fn)
        template = chip.chip.template(template_name)
        if template is None:
            raise DcmiError(ERR_INVALID_PARAMETER, fn)
        with self._state.write() as state:
            self._alive(chip, state, fn)
            if not allocator.fits(self._free(chip, state), chip.chip.need(template)):
                raise DcmiError(ERR_RESOURCE_OCCUPIED, fn)
            vdevs = state.setdefault("vdevs", {}).setdefault(str(chip.logic_id), {})
            taken = {int(v) for v in vdevs}
            ids = models.vnpu_id_range(chip.phy_id)
            if vdev_id == VDEV_ID_AUTO:
                # Hand ids out round-robin, so a destroyed vNPU's id is not reused at once.
                cursor = state.setdefault("cursor", {}).get(str(chip.logic_id), ids.start)
                order = [i for i in ids if i >= cursor] + [i for i in ids if i < cursor]
                free_ids = [i for i in order if i not in taken]
                if not free_ids:
                    raise DcmiError(ERR_RESOURCE_OCCUPIED, fn)
                vdev_id = free_ids[0]
                nxt = vdev_id + 1
                state["cursor"][str(chip.logic_id)] = nxt if nxt in ids else ids.start
            elif vdev_id not in ids:
                raise DcmiError(ERR_INVALID_PARAMETER, fn)
            elif vdev_id in taken:
                raise DcmiError(ERR_RESOURCE_OCCUPIED, fn)
            vfg_id = min(set(range(len(taken) + 1)) - {v["vfg_id"] for v in vdevs.values()})
            vdevs[str(vdev_id)] = {"template": template.name, "vfg_id": vfg_id}
            faults = state.setdefault("faults", {})
            midway = faults.get("create_midway", [])
            if chip.logic_id in midway:
                # The vNPU exists now; the backend's next step on it will fail once.
                midway.remove(chip.logic_id)
                faults.setdefault("poisoned", {})[str(chip.logic_id)] = vdev_id
        return VdevCreated(vdev_id, vfg_id)

    def destroy_vdevice(self, card_id: int, device_id: int, vdev_id: int) -> None:
        fn = "dcmi_set_destroy_vdevice"
        chip = self._chip(card_id, device_id, fn)
        with self._state.write() as state:
            self._alive(chip, state, fn)
            vdevs = self._vdevs(state, chip.logic_id)
            if str(vdev_id) not in vdevs:
                raise DcmiError(ERR_INVALID_DEVICE_ID, fn)
            del vdevs[str(vdev_id)]
            poisoned = state.get("faults", {}).get("poisoned", {})
            if poisoned.get(str(chip.logic_id)) == vdev_id:
                del poisoned[str(chip.logic_id)]

    def total_resource(self, card_id: int, device_id: int) -> SocResource:
        chip, state = self._live_chip(card_id, device_id, "dcmi_get_device_info")
        m = chip.chip
        ids = tuple(sorted(int(v) for v in self._vdevs(state, chip.logic_id)))
        return SocResource(float(m.aicore), m.aicpu or 0, m.memory_mb, ids)

    def free_resource(self, card_id: int, device_id: int) -> SocResource:
        chip, state = self._live_chip(card_id, device_id, "dcmi_get_device_info")
        free = self._free(chip, state)
        return SocResource(float(free["aicore"]), free.get("aicpu", 0), free["memory_mb"])

    def vdevice_info(self, card_id: int, device_id: int, vdev_id: int) -> VdevInfo:
        fn = "dcmi_get_device_info"
        chip, state = self._live_chip(card_id, device_id, fn)
        if state.get("faults", {}).get("poisoned", {}).get(str(chip.logic_id)) == vdev_id:
            with self._state.write() as w:
                w["faults"]["poisoned"].pop(str(chip.logic_id), None)
            raise DcmiError(ERR_INNER_ERR, fn)
        v = self._vdevs(state, chip.logic_id).get(str(vdev_id))
        template = chip.chip.template(v["template"]) if v else None
        if v is None or template is None:
            raise DcmiError(ERR_INVALID_DEVICE_ID, fn)
        return VdevInfo(
            vdev_id=vdev_id,
            name=template.name,
            status=1,
            is_container_used=0,
            vfg_id=int(v["vfg_id"]),
            aicore=float(template.aicore),
            aicpu=template.aicpu,
            memory_mb=template.memory_mb,
        )

    # -- faults (simulator only) -------------------------------------------------
    def inject_fault(self, fault: str, logic_id: int) -> None:
        """Make chip ``logic_id`` misbehave from now on, in every process."""
        if logic_id not in {c.logic_id for c in self._chips}:
            raise DcmiError(ERR_INVALID_DEVICE_ID, "inject_fault")
        with self._state.write() as state:
            faults = state.setdefault("faults", {})
            name = {FAULT_DEVICE_LOST: "lost", FAULT_CREATE_MIDWAY: "create_midway"}[fault]
            listed = faults.setdefault(name, [])
            if logic_id not in listed:
                listed.append(logic_id)

    def clear_faults(self) -> None:
        with self._state.write() as state:
            state.pop("faults", None)
