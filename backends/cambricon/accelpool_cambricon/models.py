"""The Cambricon MLU models accelpool knows, with their MIM and SMLU partition rules.

Public facts: ``cndevNameEnum_t`` (MLU370 = 23, MLU590 = 26), the MLU370-X8 carries
two MLU370 chips and 48 GB LPDDR5 (24 GB per chip), MIM profile types slice a chip
into 1 to 6 MLU clusters with "+MEM" variants (``cndevMLUInstanceProfileEnum_t``),
MIM profile names look like ``2m.8gb`` (device-plugin resource ``mlu370.mim-2m.8gb``)
and ``2m.16gb``/``4m.32gb`` (cndev mock), dynamic SMLU splits a card into 100 vcore
units and memory units of 256 MiB (HAMi).

**Modelled, not verified** (no public source; correct them from ``cnmon info`` on a
real card): the cluster counts (MLU370: 6, MLU590: 10), 4 MLU cores per cluster, the
MLU370-X4's 24 GB and the MLU590's 80 GB, one memory slice per cluster, and MIM
placements aligned to the instance's size. ``docs/backends/cambricon.md`` says so too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: ``cndevNameEnum_t`` values.
CNDEV_NAME_MLU370 = 23
CNDEV_NAME_MLU590 = 26

#: ``cndevMLUInstanceProfileEnum_t`` -> (MLU clusters, memory slices). Type 1 (one
#: cluster plus two VPUs) differs from type 0 only in video units, which accelpool
#: does not model, so it is not offered.
MIM_PROFILE_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 1),  # CNDEV_MLUINSTANCE_PROFILE_1_SLICE
    2: (2, 2),  # CNDEV_MLUINSTANCE_PROFILE_2_SLICE
    3: (2, 1),  # CNDEV_MLUINSTANCE_PROFILE_2_SLICE_MLU_1_SLICE_MEM
    4: (3, 3),  # CNDEV_MLUINSTANCE_PROFILE_3_SLICE
    5: (4, 4),  # CNDEV_MLUINSTANCE_PROFILE_4_SLICE
    6: (5, 5),  # CNDEV_MLUINSTANCE_PROFILE_5_SLICE
    7: (6, 6),  # CNDEV_MLUINSTANCE_PROFILE_6_SLICE
    8: (1, 2),  # CNDEV_MLUINSTANCE_PROFILE_1_SLICE_MLU_2_SLICE_MEM
}
#: ``CNDEV_MLUINSTANCE_PROFILE_COUNT``: the profile types a driver may be asked about.
MIM_PROFILE_TYPE_COUNT = 9

#: Dynamic SMLU: compute is shared in 100 vcore units, memory in 256 MiB units (HAMi).
SMLU_VCORE_UNITS = 100
SMLU_MEMORY_UNIT_MB = 256
#: The shares ``profiles()`` lists (percent of compute); any share can be created.
SMLU_LADDER = (10, 25, 50, 100)

MODES = ("mim", "smlu", "default")


@dataclass(frozen=True)
class MimProfileSpec:
    """One MIM profile on one model: its cndev type, its shape and its name."""

    profile_type: int
    clusters: int
    memory_slices: int
    name: str
    mlu_cores: int
    memory_mb: int


@dataclass(frozen=True)
class MluModel:
    """One card model. ``memory_mb``, clusters and cores are per chip (per cndev device)."""

    product: str
    chip: str
    name_enum: int
    chips_per_card: int
    memory_mb: int
    clusters: int
    cores_per_cluster: int
    mim: bool = True
    smlu: bool = True
    default_mode: str = "mim"
    #: what a simulated idle chip reports (synthetic, not measured)
    idle_temperature_c: int = 40

    @property
    def mlu_cores(self) -> int:
        return self.clusters * self.cores_per_cluster

    @property
    def slice_mb(self) -> int:
        return self.memory_mb // self.clusters

    def modes(self) -> tuple[str, ...]:
        """The partition modes this model supports, plus ``default`` (no partitions)."""
        return tuple(m for m in MODES if m == "default" or getattr(self, m))

    def mim_profiles(self) -> tuple[MimProfileSpec, ...]:
        if not self.mim:
            return ()
        out = []
        for ptype, (clusters, slices) in MIM_PROFILE_TYPES.items():
            if clusters > self.clusters or slices > self.clusters:
                continue
            memory = slices * self.slice_mb
            out.append(
                MimProfileSpec(
                    ptype,
                    clusters,
                    slices,
                    f"{clusters}m.{memory // 1024}gb",
                    clusters * self.cores_per_cluster,
                    memory,
                )
            )
        return tuple(sorted(out, key=lambda p: (p.clusters, p.memory_slices)))

    def mim_profile(self, profile_type: int) -> MimProfileSpec | None:
        for p in self.mim_profiles():
            if p.profile_type == profile_type:
                return p
        return None


MODELS: dict[str, MluModel] = {
    m.product: m
    for m in (
        MluModel("MLU370-X8", "MLU370", CNDEV_NAME_MLU370, 2, 24576, 6, 4),
        MluModel("MLU370-X4", "MLU370", CNDEV_NAME_MLU370, 1, 24576, 6, 4),
        MluModel("MLU590", "MLU590", CNDEV_NAME_MLU590, 1, 81920, 10, 4, idle_temperature_c=38),
    )
}

CHIP_NAMES = {CNDEV_NAME_MLU370: "MLU370", CNDEV_NAME_MLU590: "MLU590"}


def model(product: str) -> MluModel | None:
    """The model by product name (``MLU370-X8``, ``MLU590``), or None."""
    return MODELS.get(product)


def mim_placements(clusters: int, size: int) -> tuple[int, ...]:
    """Starts a ``size``-cluster MIM instance may take (aligned to its size)."""
    if size <= 0 or size > clusters:
        return ()
    return tuple(range(0, clusters - size + 1, size))


# -- SMLU share names: smlu-<percent>-<memory>, memory as <n>gb or <n>mb -----------
_SMLU_NAME = re.compile(r"^smlu-(\d{1,3})-(\d{1,7})(gb|mb)$")


def smlu_name(quota: int, memory_mb: int) -> str:
    """The profile name of an SMLU share: ``smlu-25-6gb``, ``smlu-10-2304mb``."""
    memory = f"{memory_mb // 1024}gb" if memory_mb % 1024 == 0 else f"{memory_mb}mb"
    return f"smlu-{quota}-{memory}"


def parse_smlu_name(name: str) -> tuple[int, int] | None:
    """``(percent, memory MiB)`` of an SMLU share name, or None if it is not one."""
    m = _SMLU_NAME.match(name)
    if m is None:
        return None
    quota, amount, unit = int(m.group(1)), int(m.group(2)), m.group(3)
    return quota, amount * 1024 if unit == "gb" else amount


def smlu_ladder(memory_mb: int) -> list[tuple[int, int]]:
    """The listed SMLU shares of a device: percent and a proportional memory size."""
    out = []
    for quota in SMLU_LADDER:
        units = memory_mb * quota // 100 // SMLU_MEMORY_UNIT_MB
        if units > 0:
            out.append((quota, units * SMLU_MEMORY_UNIT_MB))
    return out
