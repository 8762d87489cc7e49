"""Choosing where a MIG GPU instance goes when the caller gives no placement.

Every free start is scored by what stays creatable afterwards, biggest profiles
first. This is also the rule that reproduces the driver's own choices in public
transcripts (seven 1g creates land on 6, 4, 5, 0, 1, 2, 3; all-balanced applied
biggest first ends with 3g at 4, 2g at 0, 1g at 2 and 3), so the simulator uses it
for creates without a placement, and accelpool's choice matches the driver's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Slot = tuple[int, int]  # (start, size) in memory slices


@dataclass(frozen=True)
class Geometry:
    """What placement needs to know of one GPU instance profile."""

    profile_id: int
    size: int
    starts: tuple[int, ...]
    max_count: int


def _overlaps(a: Slot, b: Slot) -> bool:
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def free_starts(geo: Geometry, occupied: Sequence[Slot]) -> list[int]:
    return [s for s in geo.starts if not any(_overlaps((s, geo.size), o) for o in occupied)]


def creatable(geo: Geometry, occupied: Sequence[Slot], used: int) -> int:
    """How many more of ``geo`` fit (NVML's remaining-capacity rule: greedy, capped)."""
    taken = list(occupied)
    fits = 0
    for s in geo.starts:
        slot = (s, geo.size)
        if not any(_overlaps(slot, t) for t in taken):
            taken.append(slot)
            fits += 1
    return max(0, min(geo.max_count - used, fits))


def choose_placement(
    target: Geometry,
    profiles: Sequence[Geometry],
    occupied: Sequence[Slot],
    counts: Mapping[int, int],
) -> int | None:
    """The free start for ``target`` that keeps the larger profiles creatable.

    Each candidate is scored by a vector: for every instance size, largest first,
    the number of instances of that size still creatable after placing ``target``
    there. Vectors compare lexicographically; ties go to the lowest start. ``None``
    when no start is free.
    """
    best: tuple[tuple[int, ...], int] | None = None
    sizes = sorted({p.size for p in profiles}, reverse=True)
    for start in free_starts(target, occupied):
        after = [*occupied, (start, target.size)]
        used = dict(counts)
        used[target.profile_id] = used.get(target.profile_id, 0) + 1
        score = tuple(
            sum(creatable(p, after, used.get(p.profile_id, 0)) for p in profiles if p.size == s)
            for s in sizes
        )
        if best is None or score > best[0]:
            best = (score, start)
    return None if best is None else best[1]
