"""The sub-device profile model of the OpenCL backend (pure logic, no pyopencl).

A device of ``C`` compute units (CUs) offers two families of profiles, both of kind
``subdevice``:

``equally-N`` (``1 <= N <= C``)
    One sub-device of ``N`` CUs: one piece of the fission OpenCL's
    ``CL_DEVICE_PARTITION_EQUALLY`` with ``N`` would make. Created with
    ``CL_DEVICE_PARTITION_BY_COUNTS [N]`` where the device supports it, else with
    ``EQUALLY N`` keeping the first piece. Offered when the device lists either.
``counts-A+B+…`` (each count ``>= 1``, sum ``<= C``, at most ``max sub-devices`` counts)
    One partition holding several sub-devices of ``A``, ``B``, … CUs made by one
    ``CL_DEVICE_PARTITION_BY_COUNTS`` call. Offered when the device lists ``BY_COUNTS``.

Accounting: a partition of ``S`` CUs in all occupies the CU range
``[start, start + S)``, where ``start`` is a multiple of ``S`` (its *aligned
placements*: ``0, S, 2S, …`` while the range fits). Partitions never overlap, so
``max_count`` is ``C // S`` and ``available`` the number of aligned ranges still
wholly free. OpenCL CPU runtimes do not pin sub-devices to cores, so the ranges are
bookkeeping that keeps the sum of CUs handed out exact, not a hardware binding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from accelpool.errors import InvalidRequest

#: cl_device_partition_property values (OpenCL 1.2 headers).
PARTITION_EQUALLY = 0x1086
PARTITION_BY_COUNTS = 0x1087
PARTITION_BY_COUNTS_LIST_END = 0x0
PARTITION_BY_AFFINITY_DOMAIN = 0x1088
PARTITION_NAMES = {
    PARTITION_EQUALLY: "EQUALLY",
    PARTITION_BY_COUNTS: "BY_COUNTS",
    PARTITION_BY_AFFINITY_DOMAIN: "BY_AFFINITY_DOMAIN",
}
#: ``profiles()`` lists balanced whole-device ``counts-`` fissions into 2…this many
#: sub-devices; any other valid ``counts-`` profile is accepted but not listed (there
#: are exponentially many).
MAX_LISTED_COUNTS = 8

_EQUALLY = re.compile(r"equally-(\d+)")
_COUNTS = re.compile(r"counts-(\d+(?:\+\d+)*)")


@dataclass(frozen=True)
class Fission:
    """What a device can be split into: its CUs and the partition properties it lists."""

    compute_units: int
    properties: frozenset[int]
    max_sub_devices: int

    @classmethod
    def of(cls, compute_units: int, properties: Iterable[int], max_sub_devices: int) -> Fission:
        props = frozenset(p for p in properties if p in PARTITION_NAMES)
        return cls(int(compute_units), props, int(max_sub_devices))

    @property
    def equally(self) -> bool:
        """``equally-N`` profiles are offered."""
        return self.compute_units >= 1 and bool(
            self.properties & {PARTITION_EQUALLY, PARTITION_BY_COUNTS}
        )

    @property
    def counts(self) -> bool:
        """``counts-A+B…`` profiles are offered."""
        return self.compute_units >= 1 and PARTITION_BY_COUNTS in self.properties

    @property
    def max_counts(self) -> int:
        """Most sub-devices one ``counts-`` profile may hold."""
        return max(1, min(self.max_sub_devices, self.compute_units))

    @property
    def partitionable(self) -> bool:
        return self.equally or self.counts

    def property_names(self) -> str:
        names = [PARTITION_NAMES[p] for p in sorted(self.properties)]
        return ",".join(names) if names else "none"

    def valid_choices(self) -> str:
        """One phrase naming every profile this device accepts."""
        if not self.partitionable:
            return "none: the device lists no EQUALLY or BY_COUNTS partition property"
        out = [f"equally-N with 1 <= N <= {self.compute_units}"]
        if self.counts:
            out.append(
                f"counts-A+B… with 1 to {self.max_counts} counts, each >= 1, "
                f"summing to at most {self.compute_units}"
            )
        return "; ".join(out)


@dataclass(frozen=True)
class ProfileSpec:
    """One parsed profile: its canonical name and the CUs of each sub-device it makes."""

    name: str
    family: str  # "equally" or "counts"
    sizes: tuple[int, ...]

    @property
    def compute_units(self) -> int:
        return sum(self.sizes)

    def cl_properties(self, fission: Fission) -> list[int]:
        """The ``clCreateSubDevices`` property list that makes this profile."""
        if self.family == "counts" or PARTITION_BY_COUNTS in fission.properties:
            return [PARTITION_BY_COUNTS, *self.sizes, PARTITION_BY_COUNTS_LIST_END]
        return [PARTITION_EQUALLY, self.sizes[0]]


def equally(n: int) -> ProfileSpec:
    return ProfileSpec(f"equally-{n}", "equally", (n,))


def counts(sizes: Sequence[int]) -> ProfileSpec:
    return ProfileSpec("counts-" + "+".join(str(s) for s in sizes), "counts", tuple(sizes))


def listed(fission: Fission) -> list[ProfileSpec]:
    """The profiles ``profiles()`` lists: every ``equally-N``, then balanced ``counts-``."""
    out: list[ProfileSpec] = []
    if fission.equally:
        out.extend(equally(n) for n in range(1, fission.compute_units + 1))
    if fission.counts:
        for k in range(2, min(fission.max_counts, MAX_LISTED_COUNTS) + 1):
            q, r = divmod(fission.compute_units, k)
            out.append(counts([q + 1] * r + [q] * (k - r)))
    return out


def parse(name: str, fission: Fission, device: str) -> ProfileSpec:
    """Parse and range-check ``name``; :class:`InvalidRequest` names the valid choices."""

    def invalid(problem: str) -> InvalidRequest:
        return InvalidRequest(f"{problem} on {device}; valid profiles: {fission.valid_choices()}")

    if not isinstance(name, str):
        raise invalid(f"profile must be a string, not {name!r}")
    if m := _EQUALLY.fullmatch(name):
        n = int(m.group(1))
        if not fission.equally:
            raise invalid(f"profile {name!r} is not offered")
        if not 1 <= n <= fission.compute_units:
            raise invalid(f"profile {name!r} asks for {n} compute units")
        return _canonical(equally(n), name, invalid)
    if m := _COUNTS.fullmatch(name):
        sizes = [int(s) for s in m.group(1).split("+")]
        if not fission.counts:
            raise invalid(f"profile {name!r} is not offered (the device lacks BY_COUNTS)")
        if any(s < 1 for s in sizes):
            raise invalid(f"profile {name!r} has a count of 0")
        if len(sizes) > fission.max_counts:
            raise invalid(f"profile {name!r} asks for {len(sizes)} sub-devices")
        if sum(sizes) > fission.compute_units:
            raise invalid(f"profile {name!r} asks for {sum(sizes)} compute units")
        return _canonical(counts(sizes), name, invalid)
    raise invalid(f"unknown or malformed profile {name!r}")


def _canonical(
    spec: ProfileSpec, name: str, invalid: Callable[[str], InvalidRequest]
) -> ProfileSpec:
    # One spelling per profile, so a partition's profile is the name the caller gave.
    if spec.name != name:
        raise invalid(f"profile {name!r} is malformed (write it {spec.name!r})")
    return spec


def aligned_starts(size: int, compute_units: int) -> range:
    """Starts a partition of ``size`` CUs may take: multiples of ``size`` that fit."""
    return range(0, (compute_units // size) * size, size)


def free_starts(size: int, compute_units: int, used: set[int]) -> list[int]:
    """Aligned starts whose whole range is free of ``used`` CUs."""
    return [s for s in aligned_starts(size, compute_units) if used.isdisjoint(range(s, s + size))]
