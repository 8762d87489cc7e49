"""GPU models the NVML simulator knows: MIG profile tables, placements and vGPU types.

Figures follow NVIDIA's MIG user guide and real ``nvidia-smi mig -lgip`` output
(A100-SXM4-40GB, A100-SXM4-80GB, H100 80GB HBM3, H200). The H200's 1g.18gb and
7g.141gb sizes are estimates that reproduce NVIDIA's profile names. Also home of the
naming rule NVIDIA's tools use for MIG profiles, which the backend applies to
whatever NVML reports.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction

MIB = 1 << 20
GIB = 1 << 30

# GPU instance profile enums (NVML_GPU_INSTANCE_PROFILE_*) and their name suffixes.
GI_1_SLICE, GI_2_SLICE, GI_3_SLICE, GI_4_SLICE, GI_7_SLICE = 0, 1, 2, 3, 4
GI_1_SLICE_REV1, GI_1_SLICE_REV2 = 7, 9
GI_PROFILE_COUNT = 0x12
#: profile enum -> suffix NVIDIA's tools append to the name
GI_SUFFIX = {7: "+me", 8: "+me", 10: "+gfx", 11: "+gfx", 12: "+gfx", 13: "-me", 14: "-me"}
GI_SUFFIX |= {15: "+me.all", 16: "+me.all", 17: "+gfx"}

# Compute instance profile enums by compute-slice count.
CI_ENUM_BY_SLICES = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4, 8: 5, 6: 6}
CI_PROFILE_COUNT = 9

# Architectures (NVML_DEVICE_ARCH_*).
ARCH_AMPERE, ARCH_HOPPER = 7, 9
ARCH_NAMES = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
}


@functools.lru_cache(maxsize=4096)  # listing a fleet names the same few profiles
def mig_memory_gb(memory_mb: int, total_bytes: int) -> int:
    """The ``<gb>`` figure in a MIG profile name (go-nvlib's getMigMemorySizeGB).

    The profile's share of memory is rounded up to eighths, scaled by the GPU's
    memory in whole GiB (rounded up) and rounded half *up*: an H200 3g is 70.5 ->
    ``71``, where Python's ``round()`` would give 70.
    """
    eighths = -((-memory_mb * MIB * 8) // total_bytes)  # ceil without float error
    total_gb = -((-total_bytes) // GIB)
    return math.floor(Fraction(eighths, 8) * total_gb + Fraction(1, 2))


@functools.lru_cache(maxsize=4096)
def mig_profile_name(
    gi_slices: int,
    memory_mb: int,
    total_bytes: int,
    profile_enum: int | None = None,
    ci_slices: int | None = None,
) -> str:
    """``[<c>c.]<g>g.<gb>gb[suffix]`` as ``nvidia-smi`` prints it."""
    gb = mig_memory_gb(memory_mb, total_bytes)
    suffix = GI_SUFFIX.get(profile_enum, "") if profile_enum is not None else ""
    base = f"{gi_slices}g.{gb}gb{suffix}"
    if ci_slices is not None and ci_slices != gi_slices:
        return f"{ci_slices}c.{base}"
    return base


@dataclass(frozen=True)
class GiProfileSpec:
    """One GPU instance profile of a model, as NVML's profile info reports it."""

    enum: int
    id: int
    slices: int  # compute slices (the "g")
    mem_slices: int  # memory slices a placement spans
    instances: int
    sms: int
    copy_engines: int
    decoders: int
    encoders: int
    jpegs: int
    ofas: int
    memory_mb: int

    def starts(self) -> tuple[int, ...]:
        """Memory-slice starts NVML offers for this profile (8 memory slices)."""
        if self.mem_slices == 8:
            return (0,)
        if self.mem_slices == 1:
            return tuple(range(7))
        if self.mem_slices == 2:
            # 1g with twice the memory may also sit at 6; a 2g may not (7 compute slices).
            return (0, 2, 4, 6) if self.slices == 1 else (0, 2, 4)
        if self.mem_slices == 4:
            return (0, 4) if self.slices == 3 else (0,)
        raise ValueError(f"no placement rule for {self.mem_slices} memory slices")


@dataclass(frozen=True)
class VgpuTypeSpec:
    """A vGPU type a model supports in host vGPU mode."""

    id: int
    name: str
    framebuffer_mb: int
    max_instances: int
    gi_profile_id: int | None = None  # MIG-backed types map to one GI profile
    vgpu_class: str = "Compute"


@dataclass(frozen=True)
class GpuModel:
    """Everything the simulator needs to play one GPU model."""

    key: str
    name: str
    pci_device_id: int
    memory_mib: int
    arch: int
    compute_capability: tuple[int, int]
    sms: int
    cores: int
    power_limit_w: int
    mig_profiles: tuple[GiProfileSpec, ...]
    vgpu_types: tuple[VgpuTypeSpec, ...] = field(default=())
    aliases: tuple[str, ...] = ()

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * MIB

    @property
    def is_ampere(self) -> bool:
        return self.arch == ARCH_AMPERE


def _gi(
    enum: int,
    id_: int,
    slices: int,
    mem_slices: int,
    instances: int,
    sms: int,
    engines: tuple[int, int, int, int, int],
    memory_mb: int,
) -> GiProfileSpec:
    ce, dec, enc, jpg, ofa = engines
    return GiProfileSpec(
        enum, id_, slices, mem_slices, instances, sms, ce, dec, enc, jpg, ofa, memory_mb
    )


def _ampere_table(mem: tuple[int, int, int, int]) -> tuple[GiProfileSpec, ...]:
    m1, m2, m4, m8 = mem
    return (
        _gi(GI_1_SLICE, 19, 1, 1, 7, 14, (1, 0, 0, 0, 0), m1),
        _gi(GI_1_SLICE_REV1, 20, 1, 1, 1, 14, (1, 1, 0, 1, 1), m1),
        _gi(GI_1_SLICE_REV2, 15, 1, 2, 4, 14, (1, 1, 0, 0, 0), m2),
        _gi(GI_2_SLICE, 14, 2, 2, 3, 28, (2, 1, 0, 0, 0), m2),
        _gi(GI_3_SLICE, 9, 3, 4, 2, 42, (3, 2, 0, 0, 0), m4),
        _gi(GI_4_SLICE, 5, 4, 4, 1, 56, (4, 2, 0, 0, 0), m4),
        _gi(GI_7_SLICE, 0, 7, 8, 1, 98, (7, 5, 0, 1, 1), m8),
    )


#: SMs per Hopper profile (1g, 1g+me, 1g 2x memory, 2g, 3g, 4g, 7g) on the SXM boards
_HOPPER_SXM_SMS = (16, 16, 26, 32, 60, 64, 132)
#: the same on an H100 PCIe (114 SMs): `nvidia-smi mig -lgip`, driver 570.169
_H100_PCIE_SMS = (14, 14, 14, 30, 46, 62, 114)


def _hopper_table(
    mem: tuple[int, int, int, int], sms: tuple[int, ...] = _HOPPER_SXM_SMS
) -> tuple[GiProfileSpec, ...]:
    m1, m2, m4, m8 = mem
    s1, s1me, s1x2, s2, s3, s4, s7 = sms
    return (
        _gi(GI_1_SLICE, 19, 1, 1, 7, s1, (1, 1, 0, 1, 0), m1),
        _gi(GI_1_SLICE_REV1, 20, 1, 1, 1, s1me, (1, 1, 0, 1, 1), m1),
        _gi(GI_1_SLICE_REV2, 15, 1, 2, 4, s1x2, (1, 1, 0, 1, 0), m2),
        _gi(GI_2_SLICE, 14, 2, 2, 3, s2, (2, 2, 0, 2, 0), m2),
        _gi(GI_3_SLICE, 9, 3, 4, 2, s3, (3, 3, 0, 3, 0), m4),
        _gi(GI_4_SLICE, 5, 4, 4, 1, s4, (4, 4, 0, 4, 0), m4),
        _gi(GI_7_SLICE, 0, 7, 8, 1, s7, (8, 7, 0, 7, 1), m8),
    )


def _vgpu_types(
    board: str,
    first_id: int,
    sliced: tuple[tuple[int, int], ...],
    mig: tuple[GiProfileSpec, ...],
    total_gb: int,
) -> tuple[VgpuTypeSpec, ...]:
    """Time-sliced ``<board>-<gb>C`` types, then MIG-backed ``<board>-<g>-<gb>C[ME]``."""
    types = [
        VgpuTypeSpec(first_id + i, f"NVIDIA {board}-{gb}C", gb * 1024, count)
        for i, (gb, count) in enumerate(sliced)
    ]
    next_id = first_id + len(sliced)
    for p in sorted(mig, key=lambda p: (p.slices, p.memory_mb, p.enum)):
        gb = Fraction(p.mem_slices, 8) * total_gb
        gbi = math.floor(gb + Fraction(1, 2))
        me = "ME" if p.enum == GI_1_SLICE_REV1 else ""
        types.append(
            VgpuTypeSpec(
                next_id,
                f"NVIDIA {board}-{p.slices}-{gbi}C{me}",
                gbi * 1024,
                p.instances,
                gi_profile_id=p.id,
            )
        )
        next_id += 1
    return tuple(types)


#: GI profile id -> (compute slices, name suffix) of the MIG-backed vGPU type on it
_MIG_VGPU_SHAPE = {19: (1, ""), 20: (1, "ME"), 14: (2, ""), 9: (3, ""), 5: (4, ""), 0: (7, "")}


def _grid_types(
    board: str,
    sliced: tuple[tuple[int, int, int], ...],
    mig: tuple[tuple[int, int, int, int], ...],
) -> tuple[VgpuTypeSpec, ...]:
    """A board's real vGPU types: ``GRID <board>-<gb>C`` time-sliced (id, GB, max per
    GPU), then ``GRID <board>-<g>-<gb>C[ME]`` MIG-backed (id, GI profile id, GB, max)."""
    types = [VgpuTypeSpec(i, f"GRID {board}-{gb}C", gb * 1024, n) for i, gb, n in sliced]
    for i, profile, gb, n in mig:
        g, me = _MIG_VGPU_SHAPE[profile]
        name = f"GRID {board}-{g}-{gb}C{me}"
        types.append(VgpuTypeSpec(i, name, gb * 1024, n, gi_profile_id=profile))
    return tuple(types)


# vGPU types of the A100 boards: ids, names and sizes from vgpuConfig.xml of driver
# 510.47.03; maximum counts from NVIDIA's vGPU type tables. The 80GB boards have no
# 5C type, and no board has a MIG-backed type on 1g.10gb/1g.20gb (profile 15).
_A100_40_SLICED = ((4, 10), (5, 8), (8, 5), (10, 4), (20, 2), (40, 1))
_A100_40_MIG = ((19, 5, 7), (14, 10, 3), (9, 20, 2), (5, 20, 1), (0, 40, 1))


def _a100_40_types(board: str, first: int, me_id: int) -> tuple[VgpuTypeSpec, ...]:
    sliced = tuple((first + i, gb, n) for i, (gb, n) in enumerate(_A100_40_SLICED))
    base = first + len(sliced)
    mig = tuple((base + i, p, gb, n) for i, (p, gb, n) in enumerate(_A100_40_MIG))
    return _grid_types(board, sliced, (*mig, (me_id, 20, 5, 1)))


_A100X_TYPES = _a100_40_types("A100X", 457, 704)  # HGX A100 40GB: nvidia-457...467, 704
_A100_PCIE_TYPES = _a100_40_types("A100", 468, 706)  # A100 PCIe 40GB: nvidia-468...478, 706
_A100DX_SLICED = ((615, 4, 20), (616, 8, 10), (617, 10, 8), (618, 16, 5), (619, 20, 4))
_A100DX_MIG = ((622, 19, 10, 7), (623, 14, 20, 3), (624, 9, 40, 2), (625, 5, 40, 1))
_A100DX_TYPES = _grid_types(  # HGX A100 80GB: nvidia-615...626, 705
    "A100DX",
    (*_A100DX_SLICED, (620, 40, 2), (621, 80, 1)),
    (*_A100DX_MIG, (626, 0, 80, 1), (705, 20, 10, 1)),
)
_A100_40 = _ampere_table((4864, 9856, 19968, 40192))
_A100_80 = _ampere_table((9728, 19968, 40192, 80640))
_H100_80 = _hopper_table((9984, 20096, 40448, 81152))
_H100_PCIE = _hopper_table((9984, 20096, 40448, 81152), _H100_PCIE_SMS)
# 1g.35gb/2g.35gb are 32.25 GiB and 3g.71gb/4g.71gb 69.50 GiB on a real H200
# (nvidia-smi mig -lgip in NVIDIA/mig-parted#120).
_H200 = _hopper_table((16384, 33024, 71168, 143104))

MODELS: tuple[GpuModel, ...] = (
    GpuModel(
        key="A100-SXM4-40GB",
        name="NVIDIA A100-SXM4-40GB",
        pci_device_id=0x20B010DE,
        memory_mib=40960,
        arch=ARCH_AMPERE,
        compute_capability=(8, 0),
        sms=108,
        cores=6912,
        power_limit_w=400,
        mig_profiles=_A100_40,
        vgpu_types=_A100X_TYPES,
        aliases=("A100-40GB", "A100"),
    ),
    GpuModel(
        key="A100-PCIE-40GB",
        name="NVIDIA A100-PCIE-40GB",
        pci_device_id=0x20F110DE,
        memory_mib=40960,
        arch=ARCH_AMPERE,
        compute_capability=(8, 0),
        sms=108,
        cores=6912,
        power_limit_w=250,
        mig_profiles=_A100_40,
        vgpu_types=_A100_PCIE_TYPES,
        aliases=("A100-PCIe-40GB", "A100-PCIE"),
    ),
    GpuModel(
        key="A100-SXM4-80GB",
        name="NVIDIA A100-SXM4-80GB",
        pci_device_id=0x20B210DE,
        memory_mib=81920,
        arch=ARCH_AMPERE,
        compute_capability=(8, 0),
        sms=108,
        cores=6912,
        power_limit_w=400,
        mig_profiles=_A100_80,
        vgpu_types=_A100DX_TYPES,
        aliases=("A100-80GB",),
    ),
    GpuModel(
        key="H100-80GB-HBM3",
        name="NVIDIA H100 80GB HBM3",
        pci_device_id=0x233010DE,
        memory_mib=81559,
        arch=ARCH_HOPPER,
        compute_capability=(9, 0),
        sms=132,
        cores=16896,
        power_limit_w=700,
        mig_profiles=_H100_80,
        vgpu_types=_vgpu_types(
            "H100XM",
            800,
            ((4, 20), (5, 16), (8, 10), (10, 8), (16, 5), (20, 4), (40, 2), (80, 1)),
            _H100_80,
            80,
        ),
        aliases=("H100", "H100-SXM5-80GB", "H100 80GB HBM3"),
    ),
    GpuModel(
        key="H100-PCIE",
        name="NVIDIA H100 PCIe",
        pci_device_id=0x233110DE,
        memory_mib=81559,
        arch=ARCH_HOPPER,
        compute_capability=(9, 0),
        sms=114,
        cores=14592,
        power_limit_w=350,
        mig_profiles=_H100_PCIE,
        vgpu_types=_vgpu_types(
            "H100",
            900,
            ((4, 20), (5, 16), (8, 10), (10, 8), (16, 5), (20, 4), (40, 2), (80, 1)),
            _H100_PCIE,
            80,
        ),
        aliases=("H100-PCIe-80GB", "H100 PCIe"),
    ),
    GpuModel(
        key="H200",
        name="NVIDIA H200",
        pci_device_id=0x233510DE,
        memory_mib=143771,
        arch=ARCH_HOPPER,
        compute_capability=(9, 0),
        sms=132,
        cores=16896,
        power_limit_w=700,
        mig_profiles=_H200,
        vgpu_types=_vgpu_types(
            "H200X",
            1000,
            ((4, 32), (7, 20), (8, 16), (14, 10), (17, 8), (28, 5), (35, 4), (70, 2), (141, 1)),
            _H200,
            141,
        ),
        aliases=("H200-SXM5-141GB", "H200-141GB"),
    ),
)


def _norm(name: str) -> str:
    text = name.upper().replace("NVIDIA", "").strip()
    return "".join(ch for ch in text if ch.isalnum())


_BY_NAME = {_norm(alias): m for m in MODELS for alias in (m.key, m.name, *m.aliases)}


def find_model(name: str) -> GpuModel | None:
    """The model for a fleet file's ``model`` string (case, spaces and dashes ignored)."""
    return _BY_NAME.get(_norm(name))


def model_keys() -> list[str]:
    return [m.key for m in MODELS]
