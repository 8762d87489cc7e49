"""An upper bound on what any placement can allocate in MIG mode, from an exact solver.

The bound knows every demand in advance and ignores arrival order, so no online policy
can allocate more. Hosts' devices are interchangeable, so the model chooses, per host,
how many devices take each maximal MIG layout, and how many demands of each class go to
the host; it needs HiGHS (``pip install 'accelpool[plan]'``).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from accelpool.errors import InvalidRequest
from accelpool.pool.fleet import Fleet
from accelpool.pool.mig import A100_40GB, MigGeometry
from accelpool.pool.model import Demand, Host


@dataclass(frozen=True)
class Bound:
    """``allocated_units`` is the best allocation the solver proved possible (its
    objective); ``bound_units`` the proven upper bound (equal when optimal)."""

    allocated_units: float
    bound_units: float
    capacity_units: int
    optimal: bool
    seconds: float

    @property
    def unallocated_lower_bound_pct(self) -> float:
        """No placement leaves less than this share of capacity unallocated."""
        return 100.0 * (1.0 - self.bound_units / self.capacity_units)


def layouts(geo: MigGeometry) -> list[tuple[int, ...]]:
    """Profile count vectors of the maximal valid layouts of one device."""
    opts = [
        (p, geo.mask(p, s), prof.compute)
        for p, prof in enumerate(geo.profiles)
        for s in prof.starts
    ]
    found: set[tuple[int, ...]] = set()

    def walk(i: int, mask: int, used: int, counts: list[int]) -> None:
        grown = False
        for j in range(i, len(opts)):
            p, m, c = opts[j]
            if not mask & m and used + c <= geo.compute_slices:
                grown = True
                counts[p] += 1
                walk(j + 1, mask | m, used + c, counts)
                counts[p] -= 1
        if not grown:
            found.add(tuple(counts))

    walk(0, 0, 0, [0] * len(geo.profiles))
    # Keep the layouts no other layout dominates.
    vecs = sorted(found)
    return [
        v
        for v in vecs
        if not any(w != v and all(a >= b for a, b in zip(w, v, strict=True)) for w in vecs)
    ]


def _quiet_highs(highspy: Any) -> Any:
    """A HiGHS instance whose start-up banner does not reach our stdout (it is printed
    from C++, so only redirecting the file descriptor silences it)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    return h


def mig_bound(
    demands: Sequence[Demand],
    hosts: Sequence[Host],
    geometry: MigGeometry = A100_40GB,
    time_limit: float = 60.0,
) -> Bound:
    """Solve the offline placement of ``demands`` on ``hosts`` (all devices in MIG mode)
    for the most compute slices allocated."""
    try:
        import highspy
    except ImportError:  # pragma: no cover - depends on the install
        raise InvalidRequest("the MIG bound needs HiGHS: pip install 'accelpool[plan]'") from None
    fleet = Fleet(hosts, "mig", geometry)
    reqs = [fleet.request(d) for d in demands]
    classes = Counter(
        (r.cpu, r.mem, r.count, r.key if r.count else -1, tuple(r.models)) for r in reqs
    )
    lays = layouts(geometry)
    n_hosts, n_prof = len(hosts), len(geometry.profiles)
    h = _quiet_highs(highspy)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("threads", 1)
    inf = highspy.kHighsInf
    col = 0
    cols_w: dict[tuple[int, int], int] = {}
    cols_z: dict[tuple[int, int], int] = {}
    cost: list[float] = []
    upper: list[float] = []
    keys = list(classes)
    for n in range(n_hosts):
        for li in range(len(lays)):
            cols_w[(n, li)] = col
            cost.append(0.0)
            upper.append(float(fleet.ngpu[n]))
            col += 1
        for k, (cpu, mem, cnt, key, models) in enumerate(keys):
            if cpu > fleet.cpu[n] or mem > fleet.mem[n] or not models[fleet.model[n]]:
                continue
            if cnt > fleet.ngpu[n]:
                continue
            units = cnt * geometry.profiles[key].compute if cnt else 0
            cols_z[(n, k)] = col
            cost.append(float(units))
            upper.append(float(classes[keys[k]]))
            col += 1
    h.addVars(col, np.zeros(col), np.array(upper))
    h.changeColsIntegrality(
        col,
        np.arange(col, dtype=np.int32),
        np.full(col, highspy.HighsVarType.kInteger, dtype=np.uint8),
    )
    h.changeColsCost(col, np.arange(col, dtype=np.int32), -np.array(cost))

    def row(lo: float, hi: float, idx: list[int], val: list[float]) -> None:
        if idx:
            h.addRow(lo, hi, len(idx), np.array(idx, dtype=np.int32), np.array(val))

    for n in range(n_hosts):
        row(
            float(fleet.ngpu[n]),
            float(fleet.ngpu[n]),
            [cols_w[(n, li)] for li in range(len(lays))],
            [1.0] * len(lays),
        )
        zs = [(k, c) for (m, k), c in cols_z.items() if m == n]
        for p in range(n_prof):
            idx = [c for k, c in zs if keys[k][3] == p]
            val = [float(keys[k][2]) for k, c in zs if keys[k][3] == p]
            idx += [cols_w[(n, li)] for li in range(len(lays)) if lays[li][p]]
            val += [-float(lays[li][p]) for li in range(len(lays)) if lays[li][p]]
            row(-inf, 0.0, idx, val)
        row(-inf, float(fleet.cpu[n]), [c for _, c in zs], [float(keys[k][0]) for k, _ in zs])
        row(-inf, float(fleet.mem[n]), [c for _, c in zs], [float(keys[k][1]) for k, _ in zs])
    for k in range(len(keys)):
        idx = [c for (_, kk), c in cols_z.items() if kk == k]
        row(-inf, float(classes[keys[k]]), idx, [1.0] * len(idx))
    t0 = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - t0
    info = h.getInfo()
    optimal = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    best = -float(info.objective_function_value)
    bound = -float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else best
    return Bound(best, max(best, bound), fleet.capacity_units, optimal, seconds)
