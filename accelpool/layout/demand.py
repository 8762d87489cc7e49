"""Demand-driven planning: the layout that serves a demand on the fewest devices.

A demand file (TOML) lists ``[[workload]]`` tables: ``count`` and either ``profile``
or ``memory_gib`` and ``compute`` (a share of the device, 0-1), optionally ``model``
(a substring of the device model). Each workload takes, on each model that can serve
it, the smallest profile that covers it.

Devices are grouped into classes (same host-independent state: model, claimed
partitions and their placements, other partitions); on each class every set of
profiles that fits the slots its claimed partitions leave free is a *configuration*.
An integer program (HiGHS) chooses how many devices of each class take each
configuration: first the fewest devices used, then, with that many, the fewest
partitions destroyed or created. Claimed partitions are always kept and never serve
the demand. The result is a layout file :func:`accelpool.layout.apply` accepts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from accelpool.errors import InvalidRequest
from accelpool.layout.spec import read_toml

if TYPE_CHECKING:
    from accelpool.inventory import Device, Inventory
    from accelpool.types import PartitionProfile

GIB = 1 << 30


@dataclass
class DeviceSlot:
    """One device the planner may use: its host, state and configurations."""

    host: str | None
    ref: str
    model: str
    fixed: Counter[str]  # claimed partitions, kept as they are
    current: Counter[str]  # other complete partitions now on it


@dataclass
class Proposal:
    """A plan: the layout per device, devices used, changes, and the solver's bound."""

    layouts: list[dict[str, Any]]  # {"host", "device", "model", "partitions"}
    devices_used: int
    lower_bound: float
    optimal: bool
    changes: int = 0
    notes: list[str] = field(default_factory=list)

    def to_toml(self) -> str:
        out = [
            f"# {self.devices_used} devices used, {self.changes} partition changes; "
            f"solver lower bound {self.lower_bound:g} devices"
        ]
        for lay in self.layouts:
            body = ", ".join(f'"{k}" = {v}' for k, v in sorted(lay["partitions"].items()))
            host = f'host = "{lay["host"]}"\n' if lay["host"] is not None else ""
            out.append(
                f'[[device]]  # {lay["model"]}\n{host}select = "{lay["device"]}"\n'
                f"partitions = {{ {body} }}\n"
            )
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "devices_used": self.devices_used,
            "lower_bound": self.lower_bound,
            "gap": self.devices_used - self.lower_bound,
            "optimal": self.optimal,
            "changes": self.changes,
            "layouts": self.layouts,
        }


def _pick(profiles: list[PartitionProfile], w: dict[str, Any], total_cu: int) -> str | None:
    """The profile serving workload ``w`` on a device with ``profiles``; None if none can."""
    if "profile" in w:
        return str(w["profile"]) if w["profile"] in {p.name for p in profiles} else None
    mem = float(w.get("memory_gib", 0)) * GIB
    cu = float(w.get("compute", 0)) * total_cu
    fits = [
        p
        for p in profiles
        if p.memory_bytes >= mem and p.compute_units >= cu - 1e-9 and "+" not in p.name
    ]  # media-extension profiles only when asked by name
    if not fits:
        return None
    return min(fits, key=lambda p: (p.compute_units, p.memory_bytes)).name


def configurations(
    profiles: list[PartitionProfile], blocked: frozenset[int] = frozenset()
) -> list[Counter[str]]:
    """Every multiset of placed profiles that fits one device, ``blocked`` slots taken."""
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

    walk(0, blocked, Counter())
    return out


def load_demand(path: str) -> list[dict[str, Any]]:
    """The ``[[workload]]`` tables of a demand file, checked."""
    doc = read_toml(path, "demand file")
    work = doc.get("workload", [])
    if not isinstance(work, list) or not work:
        raise InvalidRequest(f"{path}: no [[workload]] tables; add one with count and profile")
    for i, w in enumerate(work):
        if not isinstance(w, dict):
            raise InvalidRequest(f"{path}: workload {i} must be a [[workload]] table")
        c = w.get("count", 1)
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            raise InvalidRequest(f"{path}: workload {i}: count must be a whole number >= 0")
        if "profile" not in w and "memory_gib" not in w and "compute" not in w:
            raise InvalidRequest(f"{path}: workload {i} needs profile, or memory_gib/compute")
        for k in ("profile", "model"):
            if k in w and not isinstance(w[k], str):
                raise InvalidRequest(f"{path}: workload {i}: {k} must be a string")
        for k in ("memory_gib", "compute"):
            if k in w and (not isinstance(w[k], int | float) or w[k] < 0):
                raise InvalidRequest(f"{path}: workload {i}: {k} must be a number >= 0")
    return work


def _classes(
    hosts: list[tuple[str | None, Inventory]], claimed: dict[str, str]
) -> tuple[list[list[DeviceSlot]], list[list[Counter[str]]], dict[str, Device]]:
    """Devices grouped by state, each group's configurations, and one device per model."""
    groups: dict[tuple[Any, ...], list[DeviceSlot]] = {}
    configs: dict[tuple[Any, ...], list[Counter[str]]] = {}
    sample: dict[str, Device] = {}
    for host, inv in hosts:
        for d in inv.devices():
            if d.lost or d.id in claimed:
                continue
            profiles = [p for p in d.profiles() if p.placements]
            if not profiles:
                continue
            parts = d.partitions()
            fixed = [p for p in parts if p.id in claimed]
            blocked = frozenset(
                s
                for p in fixed
                if p.placement
                for s in range(p.placement.start, p.placement.start + p.placement.size)
            )
            cur = Counter(p.profile for p in parts if p.id not in claimed and p.complete)
            key = (
                d.model,
                blocked,
                tuple(sorted(Counter(p.profile for p in fixed).items())),
                tuple(sorted(cur.items())),
            )
            slot = DeviceSlot(
                host, f"{d.backend}:{d.index}", d.model, Counter(p.profile for p in fixed), cur
            )
            groups.setdefault(key, []).append(slot)
            if key not in configs:
                configs[key] = configurations(profiles, blocked)
            sample.setdefault(d.model, d)
    keys = list(groups)
    return [groups[k] for k in keys], [configs[k] for k in keys], sample


def _solve(
    classes: list[list[DeviceSlot]],
    configs: list[list[Counter[str]]],
    need: list[tuple[int, dict[str, str]]],
    time_limit: float,
    max_devices: float | None,
) -> tuple[list[list[int]], float, bool]:
    """x[class][config]: devices of each class taking each configuration."""
    import highspy

    from accelpool.pool.bound import _quiet_highs

    h = _quiet_highs(highspy)
    h.setOptionValue("time_limit", float(time_limit))
    cols: list[tuple[int, int]] = []
    cost: list[float] = []
    for ci, (cl, cfgs) in enumerate(zip(classes, configs, strict=True)):
        for k, c in enumerate(cfgs):
            cols.append((ci, k))
            used = 1.0 if (c or cl[0].fixed) else 0.0
            change = sum(((cl[0].current - c) + (c - cl[0].current)).values())
            cost.append(used if max_devices is None else float(change))
    n = len(cols)
    # z[w, model]: instances of workload w served on devices of that model.
    zcols = [(w, m) for w, (_, opts) in enumerate(need) for m in opts]
    nz = len(zcols)
    inf = highspy.kHighsInf
    upper = [float(len(classes[ci])) for ci, _ in cols] + [float(need[w][0]) for w, _ in zcols]
    h.addVars(n + nz, np.zeros(n + nz), np.array(upper))
    h.changeColsIntegrality(
        n + nz,
        np.arange(n + nz, dtype=np.int32),
        np.full(n + nz, highspy.HighsVarType.kInteger, dtype=np.uint8),
    )
    h.changeColsCost(n + nz, np.arange(n + nz, dtype=np.int32), np.array(cost + [0.0] * nz))
    for ci, cl in enumerate(classes):  # every device takes exactly one configuration
        idx = [i for i, (c, _) in enumerate(cols) if c == ci]
        h.addRow(
            float(len(cl)),
            float(len(cl)),
            len(idx),
            np.array(idx, dtype=np.int32),
            np.ones(len(idx)),
        )
    for w, (count, _) in enumerate(need):  # every workload instance is served
        idx = [n + j for j, (ww, _) in enumerate(zcols) if ww == w]
        h.addRow(
            float(count), float(count), len(idx), np.array(idx, dtype=np.int32), np.ones(len(idx))
        )
    supply: dict[tuple[str, str], list[int]] = {}
    for j, (w, m) in enumerate(zcols):
        supply.setdefault((m, need[w][1][m]), []).append(n + j)
    for (m, prof), zs in supply.items():  # served <= partitions of that profile on that model
        idx = [
            i
            for i, (ci, k) in enumerate(cols)
            if classes[ci][0].model == m and configs[ci][k][prof]
        ]
        vals = [-float(configs[cols[i][0]][cols[i][1]][prof]) for i in idx] + [1.0] * len(zs)
        h.addRow(-inf, 0.0, len(vals), np.array(idx + zs, dtype=np.int32), np.array(vals))
    if max_devices is not None:
        idx = [i for i, (ci, k) in enumerate(cols) if configs[ci][k] or classes[ci][0].fixed]
        h.addRow(-inf, max_devices, len(idx), np.array(idx, dtype=np.int32), np.ones(len(idx)))
    h.run()
    status = h.getModelStatus()
    sol = h.getSolution().col_value
    if status != highspy.HighsModelStatus.kOptimal and (
        not len(sol) or status == highspy.HighsModelStatus.kInfeasible
    ):
        raise InvalidRequest(
            "the demand does not fit on the free devices "
            f"({sum(len(c) for c in classes)} planned on)"
        )
    x: list[list[int]] = [[0] * len(c) for c in configs]
    for i, (ci, k) in enumerate(cols):
        x[ci][k] = round(sol[i])
    bound = float(h.getInfo().mip_dual_bound)
    return x, bound, status == highspy.HighsModelStatus.kOptimal


def propose_hosts(
    hosts: list[tuple[str | None, Inventory]],
    path: str,
    claimed: dict[str, str] | None = None,
    time_limit: float = 30.0,
) -> Proposal:
    """The layout serving the demand in ``path`` across ``hosts`` (name, inventory)."""
    from accelpool.layout.change import live_claims

    holders = live_claims() if claimed is None else claimed
    work = load_demand(path)
    classes, configs, sample = _classes(hosts, holders)
    if not classes:
        raise InvalidRequest("no device with placed partition profiles to plan on")
    need: list[tuple[int, dict[str, str]]] = []
    for i, w in enumerate(work):
        opts = {}
        for m, d in sample.items():
            if "model" in w and str(w["model"]).lower() not in m.lower():
                continue
            prof = _pick([p for p in d.profiles() if p.placements], w, d.compute_units)
            if prof is not None:
                opts[m] = prof
        if not opts:
            raise InvalidRequest(
                f"{path}: workload {i} ({w}): no device model here offers a profile that covers it"
            )
        if w.get("count", 1):
            need.append((int(w.get("count", 1)), opts))
    x, bound, optimal = _solve(classes, configs, need, time_limit, None)
    used = sum(
        x[ci][k]
        for ci, cfg in enumerate(configs)
        for k, c in enumerate(cfg)
        if c or classes[ci][0].fixed
    )
    x, _, opt2 = _solve(classes, configs, need, time_limit, float(used))
    layouts, changes = [], 0
    for ci, cl in enumerate(classes):
        devs = iter(cl)
        # Devices keep what they hold where the plan allows; on fresh devices the
        # lowest-indexed ones are used first.
        cur = cl[0].current
        order = sorted(
            range(len(configs[ci])),
            key=lambda k: (configs[ci][k] != cur if cur else 0, not configs[ci][k]),
        )
        for k in order:
            c = configs[ci][k]
            for _ in range(x[ci][k]):
                s = next(devs)
                change = sum(((s.current - c) + (c - s.current)).values())
                changes += change
                if c or s.fixed or change:
                    layouts.append(
                        {
                            "host": s.host,
                            "device": s.ref,
                            "model": s.model,
                            "partitions": dict(c + s.fixed),
                        }
                    )
    lb = float(np.ceil(bound - 1e-6))
    return Proposal(layouts, used, lb, optimal and opt2, changes)


def propose(
    inv: Inventory, path: str, claimed: dict[str, str] | None = None, time_limit: float = 30.0
) -> Proposal:
    """The layout that serves the demand in ``path`` on this host's devices."""
    return propose_hosts([(None, inv)], path, claimed, time_limit)


def load_hosts(path: str) -> list[tuple[str, str]]:
    """(name, simulated fleet) of each ``[[host]]`` in a hosts file."""
    doc = read_toml(path, "hosts file")
    out = []
    hosts = doc.get("host", [])
    for i, h in enumerate(hosts if isinstance(hosts, list) else [None]):
        if not (
            isinstance(h, dict) and isinstance(h.get("name"), str) and isinstance(h.get("sim"), str)
        ):
            raise InvalidRequest(f"{path}: host {i} needs name and sim (a preset or fleet file)")
        sim = h["sim"]
        rel = Path(path).parent / sim
        out.append((h["name"], str(rel) if rel.is_file() else sim))
    if not out:
        raise InvalidRequest(f"{path}: no [[host]] tables; add one with name and sim")
    if len({n for n, _ in out}) != len(out):
        raise InvalidRequest(f"{path}: host names must be unique")
    return out
