"""MIG geometry: profiles, their placements, and lookup tables over a device's slice mask.

A MIG device has memory slices (8 on A100) and compute slices (7). An instance of a
profile occupies a run of memory slices starting at one of the profile's allowed starts;
two instances may not overlap. A device's state is therefore an occupancy bit mask plus
the compute slices in use (a 1g.10gb takes two memory slices but one compute slice).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from accelpool.errors import InvalidRequest


@dataclass(frozen=True)
class MigProfile:
    """One GPU-instance profile: compute and memory slices and the allowed starts."""

    name: str
    compute: int
    memory: int
    starts: tuple[int, ...]


@dataclass(frozen=True)
class MigGeometry:
    """The MIG profiles of one device model."""

    model: str
    compute_slices: int
    memory_slices: int
    profiles: tuple[MigProfile, ...]

    def index(self, name: str) -> int:
        """Index of a profile by name."""
        for i, p in enumerate(self.profiles):
            if p.name == name:
                return i
        names = ", ".join(p.name for p in self.profiles)
        raise InvalidRequest(f"{self.model} has no MIG profile {name!r}: use one of {names}")

    @property
    def whole(self) -> int:
        """Index of the profile that takes the whole device."""
        return max(range(len(self.profiles)), key=lambda i: self.profiles[i].compute)

    def profile_for_share(self, compute_share: float, memory_share: float | None = None) -> int:
        """The smallest profile whose compute and memory fractions cover the shares."""
        mem = compute_share if memory_share is None else memory_share
        best: int | None = None
        for i, p in enumerate(self.profiles):
            # A small tolerance so that 1/7 asks exactly for 1 compute slice.
            if (
                p.compute / self.compute_slices + 1e-9 >= compute_share
                and p.memory / self.memory_slices + 1e-9 >= mem
            ):
                key = (p.compute, p.memory)
                if best is None or key < (self.profiles[best].compute, self.profiles[best].memory):
                    best = i
        if best is None:
            raise InvalidRequest(
                f"no {self.model} MIG profile covers compute {compute_share:.3f} and memory "
                f"{mem:.3f}: ask for at most a whole device"
            )
        return best

    def mask(self, profile: int, start: int) -> int:
        """Bit mask of the memory slices an instance at ``start`` occupies."""
        return ((1 << self.profiles[profile].memory) - 1) << start

    @property
    def full_mask(self) -> int:
        return (1 << self.memory_slices) - 1

    @cached_property
    def max_starts(self) -> int:
        return max(len(p.starts) for p in self.profiles)

    @cached_property
    def start_table(self) -> np.ndarray:
        """``[P, S]`` start slice of each placement option, -1 where the profile has fewer."""
        t = np.full((len(self.profiles), self.max_starts), -1, dtype=np.int64)
        for i, p in enumerate(self.profiles):
            t[i, : len(p.starts)] = p.starts
        return t

    @cached_property
    def mask_table(self) -> np.ndarray:
        """``[P, S]`` occupancy mask of each placement option (full mask where absent)."""
        t = np.full((len(self.profiles), self.max_starts), self.full_mask, dtype=np.int64)
        for i, p in enumerate(self.profiles):
            for j, s in enumerate(p.starts):
                t[i, j] = self.mask(i, s)
        return t

    @cached_property
    def can_host(self) -> np.ndarray:
        """``[2**memory_slices, P]``: whether a device with that occupancy mask can take
        one more instance of the profile somewhere."""
        masks = np.arange(1 << self.memory_slices)[:, None, None]
        free = (masks & self.mask_table[None, :, :]) == 0
        return free.any(axis=2)

    def state_of(self, instances: list[tuple[int, int]]) -> tuple[int, int]:
        """``(mask, compute used)`` of a device holding ``(profile, start)`` instances;
        raises on an overlap or a start the profile does not allow."""
        mask = used = 0
        for prof, start in instances:
            p = self.profiles[prof]
            if start not in p.starts:
                raise InvalidRequest(
                    f"{p.name} cannot start at slice {start} on {self.model}: starts are "
                    f"{', '.join(map(str, p.starts))}"
                )
            m = self.mask(prof, start)
            if mask & m:
                raise InvalidRequest(
                    f"{p.name} at {start} overlaps another instance on {self.model}"
                )
            mask |= m
            used += p.compute
        if used > self.compute_slices:
            raise InvalidRequest(f"instances use more than {self.compute_slices} compute slices")
        return mask, used


# NVIDIA A100-SXM4-40GB GPU-instance profiles and placements (MIG user guide).
A100_40GB = MigGeometry(
    model="A100-40GB",
    compute_slices=7,
    memory_slices=8,
    profiles=(
        MigProfile("1g.5gb", 1, 1, (0, 1, 2, 3, 4, 5, 6)),
        MigProfile("1g.10gb", 1, 2, (0, 2, 4, 6)),
        MigProfile("2g.10gb", 2, 2, (0, 2, 4)),
        MigProfile("3g.20gb", 3, 4, (0, 4)),
        MigProfile("4g.20gb", 4, 4, (0,)),
        MigProfile("7g.40gb", 7, 8, (0,)),
    ),
)
