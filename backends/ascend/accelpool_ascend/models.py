"""The Ascend chips accelpool knows, with their vNPU templates.

Numbers come from HAMi's default chip configs (``device-configmap.yaml``) and the
Ascend virtualisation docs (template naming: ``virNN`` = AI cores, ``_Xc`` = AI CPUs,
``_Yg`` = memory); AI CPU counts of the 310P and 910 templates come from Volcano's
``ascend-for-volcano`` table. Both the backend (to name profiles and work out how
many fit) and the simulator (to enforce the hard split) read these tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelpool.sim.allocator import Resources


@dataclass(frozen=True)
class VnpuTemplate:
    """One vNPU template: what a vNPU of this shape takes out of its chip."""

    name: str
    memory_mb: int
    aicore: int
    aicpu: int

    def need(self, count_aicpu: bool) -> dict[str, int]:
        """The resources one vNPU of this template consumes."""
        need = {"aicore": self.aicore, "memory_mb": self.memory_mb}
        if count_aicpu:
            need["aicpu"] = self.aicpu
        return need


@dataclass(frozen=True)
class AscendChip:
    """One chip model as DCMI reports it, with its hard-split budget.

    ``aicpu`` is ``None`` where no public source gives the chip's AI CPU count; the
    split is then bounded by AI cores and memory only.
    """

    chip_name: str
    aicore: int
    aicpu: int | None
    memory_mb: int
    hbm: bool
    templates: tuple[VnpuTemplate, ...]
    chip_type: str = "Ascend"
    chip_ver: str = "V1"
    #: what a simulated idle chip reports (synthetic, not measured)
    idle_power_w: float = 70.0
    idle_temperature_c: int = 42

    @property
    def model(self) -> str:
        """The name accelpool reports, e.g. ``Ascend910B3`` (HAMi's ``huawei.com/<chip>``)."""
        return f"{self.chip_type}{self.chip_name}"

    def budget(self) -> dict[str, int]:
        """The resources vNPU templates are cut from."""
        total = {"aicore": self.aicore, "memory_mb": self.memory_mb}
        if self.aicpu is not None:
            total["aicpu"] = self.aicpu
        return total

    def template(self, name: str) -> VnpuTemplate | None:
        for t in self.templates:
            if t.name == name:
                return t
        return None

    def need(self, template: VnpuTemplate) -> Resources:
        return template.need(self.aicpu is not None)


def _t(name: str, memory_mb: int, aicore: int, aicpu: int) -> VnpuTemplate:
    return VnpuTemplate(name, memory_mb, aicore, aicpu)


_910B_20CORE_64G = (
    _t("vir05_1c_16g", 16384, 5, 1),
    _t("vir10_3c_32g", 32768, 10, 3),
)

CHIPS: dict[str, AscendChip] = {
    c.chip_name: c
    for c in (
        AscendChip(
            "910A",
            aicore=30,
            aicpu=None,  # HAMi gives none; Volcano's per-template counts are kept below
            memory_mb=32768,
            hbm=True,
            templates=(
                _t("vir02", 2184, 2, 1),
                _t("vir04", 4369, 4, 1),
                _t("vir08", 8738, 8, 3),
                _t("vir16", 17476, 16, 7),
            ),
            idle_power_w=75.0,
        ),
        AscendChip(
            "910B2",
            aicore=24,
            aicpu=6,
            memory_mb=65536,
            hbm=True,
            templates=(
                _t("vir03_1c_8g", 8192, 3, 1),
                _t("vir06_1c_16g", 16384, 6, 1),
                _t("vir12_3c_32g", 32768, 12, 3),
            ),
            idle_power_w=92.0,
        ),
        AscendChip(
            "910B3",
            aicore=20,
            aicpu=7,
            memory_mb=65536,
            hbm=True,
            templates=_910B_20CORE_64G,
            idle_power_w=88.0,
        ),
        # HAMi #1497/#1498: the 64 GB 910B4 variant reports as 910B4-1 and takes the
        # 910B3 templates.
        AscendChip(
            "910B4-1",
            aicore=20,
            aicpu=7,
            memory_mb=65536,
            hbm=True,
            templates=_910B_20CORE_64G,
            idle_power_w=85.0,
        ),
        AscendChip(
            "910B4",
            aicore=20,
            aicpu=7,
            memory_mb=32768,
            hbm=True,
            templates=(
                _t("vir05_1c_8g", 8192, 5, 1),
                _t("vir10_3c_16g", 16384, 10, 3),
            ),
            idle_power_w=80.0,
        ),
        AscendChip(
            "310P3",
            aicore=8,
            aicpu=7,
            memory_mb=24576,
            hbm=False,
            templates=(
                _t("vir01", 3072, 1, 1),
                _t("vir02", 6144, 2, 2),
                _t("vir02_1c", 6144, 2, 1),
                _t("vir04", 12288, 4, 4),
                _t("vir04_3c", 12288, 4, 3),
            ),
            idle_power_w=18.0,
            idle_temperature_c=46,
        ),
    )
}

#: vNPU ids the driver hands out on chip ``phy_id``: ``[phy*16+100, phy*16+107]``
#: (``npu-smi set -t create-vnpu`` documentation).
VNPU_ID_BASE = 100
VNPU_ID_STRIDE = 16
VNPU_IDS_PER_CHIP = 8


def vnpu_id_range(phy_id: int) -> range:
    """The vNPU ids chip ``phy_id`` may hand out."""
    first = VNPU_ID_BASE + VNPU_ID_STRIDE * phy_id
    return range(first, first + VNPU_IDS_PER_CHIP)


def chip(name: str) -> AscendChip | None:
    """The chip model by DCMI chip name (``910B3``, ``310P3``, ...), or None."""
    return CHIPS.get(name)
