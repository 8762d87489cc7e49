"""Capacity arithmetic for partitionable devices, shared by backends and their simulators.

Two shapes of rule cover the vendors' hard splits:

* **budgets**: a partition consumes fixed amounts of named resources (AI cores, AI
  CPUs, memory, MLU clusters, memory slices, ...) out of a device's totals;
* **slots**: a partition occupies ``size`` contiguous slots starting at an aligned
  position (a multiple of ``size``), and no two partitions share a slot.

Everything here is a pure function over plain mappings and tuples, so a backend can
apply the same rule to numbers read from a real driver and its simulator can enforce
it, without either importing the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Named resource amounts, e.g. ``{"aicore": 20, "memory_mb": 65536}``.
Resources = Mapping[str, int]

__all__ = [
    "Resources",
    "aligned_starts",
    "fit_count",
    "fits",
    "free_starts",
    "remaining",
    "shortfall",
]


def fit_count(free: Resources, need: Resources) -> int:
    """How many partitions needing ``need`` fit in ``free``.

    Only resources named in ``need`` with a positive amount constrain the count; one
    missing from ``free`` counts as zero available.
    """
    counts = [free.get(name, 0) // amount for name, amount in need.items() if amount > 0]
    if not counts:
        raise ValueError("a partition must need a positive amount of at least one resource")
    return max(0, min(counts))


def fits(free: Resources, need: Resources) -> bool:
    """True when one more partition needing ``need`` fits in ``free``."""
    return fit_count(free, need) >= 1


def remaining(total: Resources, used: Iterable[Resources]) -> dict[str, int]:
    """``total`` minus the sum of ``used`` (may go negative if the input is inconsistent)."""
    left = dict(total)
    for u in used:
        for name, amount in u.items():
            if name in left:
                left[name] -= amount
    return left


def shortfall(free: Resources, need: Resources) -> dict[str, tuple[int, int]]:
    """Resources that are short for one more partition: ``name -> (needed, free)``."""
    return {
        name: (amount, free.get(name, 0))
        for name, amount in need.items()
        if amount > 0 and free.get(name, 0) < amount
    }


def aligned_starts(slots: int, size: int) -> tuple[int, ...]:
    """Every start a ``size``-slot partition may take on a ``slots``-slot device."""
    if size <= 0 or size > slots:
        return ()
    return tuple(range(0, slots - size + 1, size))


def free_starts(slots: int, size: int, occupied: Iterable[tuple[int, int]]) -> tuple[int, ...]:
    """Aligned starts whose ``[start, start+size)`` touches no occupied ``(start, size)``.

    Aligned ranges of one size never straddle each other, so the result is also the
    number of such partitions that still fit side by side.
    """
    taken: set[int] = set()
    for start, length in occupied:
        taken.update(range(start, start + length))
    return tuple(s for s in aligned_starts(slots, size) if taken.isdisjoint(range(s, s + size)))
