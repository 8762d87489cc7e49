"""Demand-driven planning: the layout that serves a demand on the fewest devices.

A demand file (TOML) lists ``[[workload]]`` tables: ``count`` and either ``profile``
or ``memory_gib`` and ``compute`` (a share of the device, 0-1). Each workload takes
the smallest profile that covers it. Every device that holds a claimed partition is
left as it is. On the other devices, every set of profiles that fits the vendor's
placements is a *configuration*; an integer program (HiGHS) picks how many devices
take each configuration, minimising the devices used. The plan is written as a
layout file that :func:`accelpool.layout.apply` accepts.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from accelpool.errors import InvalidRequest

if TYPE_CHECKING:
    from accelpool.inventory import Device, Inventory
    from accelpool.types import PartitionProfile

GIB = 1 << 30


@dataclass
class Proposal:
    """A plan: the layout per device, the devices used, and the solver's bound."""

    layouts: dict[str, dict[str, int]]
    devices_used: int
    lower_bound: float
    optimal: bool

    def to_toml(self) -> str:
        out = []
        for ref, parts in self.layouts.items():
            body = ", ".join(f'"{k}" = {v}' for k, v in sorted(parts.items()))
            out.append(f"[[device]]\nselect = {ref.split(':')[1]}\npartitions = {{ {body} }}\n")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "devices_used": self.devices_used,
            "lower_bound": self.lower_bound,
            "gap": self.devices_used - self.lower_bound,
            "optimal": self.optimal,
            "layouts": self.layouts,
        }


def _pick(
    profiles: list[PartitionProfile], w: dict[str, Any], total_mem: int, total_cu: int
) -> str:
    if "profile" in w:
        if w["profile"] not in {p.name for p in profiles}:
            raise InvalidRequest(f"no device offers profile {w['profile']!r}")
        return str(w["profile"])
    mem = float(w.get("memory_gib", 0)) * GIB
    cu = float(w.get("compute", 0)) * total_cu
    fits = [p for p in profiles if p.memory_bytes >= mem and p.compute_units >= cu]
    if not fits:
        raise InvalidRequest(f"no profile covers workload {w}; ask for less memory or compute")
    return min(fits, key=lambda p: (p.compute_units, p.memory_bytes)).name


def configurations(profiles: list[PartitionProfile]) -> list[Counter[str]]:
    """Every maximal-or-not multiset of placed profiles that fits one empty device."""
    places = [(p.name, pl.start, pl.size) for p in profiles for pl in p.placements]
    seen: set[tuple[tuple[str, int], ...]] = set()
    out: list[Counter[str]] = []

    def walk(i: int, used: frozenset[int], got: Counter[str]) -> None:
        key = tuple(sorted(got.items()))
        if key not in seen:
            seen.add(key)
            out.append(Counter(got))
        for j in range(i, len(places)):
            name, start, size = places[j]
            slots = frozenset(range(start, start + size))
            if not slots & used:
                got[name] += 1
                walk(j + 1, used | slots, got)
                got[name] -= 1
                if not got[name]:
                    del got[name]

    walk(0, frozenset(), Counter())
    return out


def propose(inv: Inventory, path: str, claimed: set[str], time_limit: float = 30.0) -> Proposal:
    """The layout that serves the demand in ``path`` on the fewest free devices."""
    try:
        doc = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InvalidRequest(f"cannot read demand file {path}: {e}") from None
    work = doc.get("workload", [])
    if not work:
        raise InvalidRequest(f"{path}: no [[workload]] tables; add one with count and profile")
    devs: list[Device] = [
        d
        for d in inv.devices()
        if not d.lost
        and any(p.placements for p in d.profiles())
        and not any(p.id in claimed for p in d.partitions())
    ]
    if not devs:
        raise InvalidRequest("no free device with placed partition profiles to plan on")
    model = devs[0].model
    devs = [d for d in devs if d.model == model]
    profiles = [p for p in devs[0].profiles() if p.placements]
    need: Counter[str] = Counter()
    for w in work:
        need[_pick(profiles, w, devs[0].memory_bytes, devs[0].compute_units)] += int(
            w.get("count", 1)
        )
    configs = [c for c in configurations(profiles) if c]
    import highspy

    from accelpool.pool.bound import _quiet_highs

    h = _quiet_highs(highspy)
    h.setOptionValue("time_limit", float(time_limit))
    n = len(configs)
    h.addVars(n, np.zeros(n), np.full(n, float(len(devs))))
    h.changeColsIntegrality(
        n, np.arange(n, dtype=np.int32), np.full(n, highspy.HighsVarType.kInteger, dtype=np.uint8)
    )
    h.changeColsCost(n, np.arange(n, dtype=np.int32), np.ones(n))
    for prof, k in need.items():
        idx = [i for i, c in enumerate(configs) if c[prof]]
        h.addRow(
            float(k),
            highspy.kHighsInf,
            len(idx),
            np.array(idx, dtype=np.int32),
            np.array([float(configs[i][prof]) for i in idx]),
        )
    h.addRow(0.0, float(len(devs)), n, np.arange(n, dtype=np.int32), np.ones(n))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise InvalidRequest(f"the demand does not fit on {len(devs)} free {model} devices")
    x = [round(v) for v in h.getSolution().col_value]
    info = h.getInfo()
    layouts: dict[str, dict[str, int]] = {}
    it = iter(devs)
    for i, k in enumerate(x):
        for _ in range(k):
            layouts[f"{(d := next(it)).backend}:{d.index}"] = dict(configs[i])
    used = sum(x)
    return Proposal(layouts, used, float(info.mip_dual_bound), True)
