"""Declarative layouts: say which partitions each device should hold, and apply it.

A layout file (TOML) lists ``[[device]]`` tables, each with a selector (``select``:
``"all"``, an index, a list of indexes, or a device id; or ``model``: a substring of
the model name) and ``partitions``: profile -> count. :func:`plan` computes the
change from what exists; :func:`apply` carries it out all-or-nothing.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelpool.errors import AccelPoolError, InvalidRequest

if TYPE_CHECKING:
    from accelpool.inventory import Device, Inventory


@dataclass
class DevicePlan:
    """The change one device needs: partitions kept, destroyed, and created."""

    ref: str
    keep: list[str] = field(default_factory=list)
    destroy: list[str] = field(default_factory=list)  # partition ids
    create: list[tuple[str, int | None]] = field(default_factory=list)  # profile, start

    @property
    def changes(self) -> bool:
        return bool(self.destroy or self.create)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.ref,
            "keep": self.keep,
            "destroy": self.destroy,
            "create": [{"profile": p, "start": s} for p, s in self.create],
        }


def load(path: str) -> list[tuple[Any, dict[str, int]]]:
    """The (selector, wanted counts) pairs of a layout file."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise InvalidRequest(f"cannot read layout file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidRequest(f"layout file {path} is not valid TOML: {e}") from None
    out = []
    for i, t in enumerate(data.get("device", [])):
        parts = t.get("partitions")
        if not isinstance(parts, dict) or not all(
            isinstance(v, int) and v >= 0 for v in parts.values()
        ):
            raise InvalidRequest(
                f"{path}: device table {i} needs partitions = {{profile = count, ...}}"
            )
        sel = {"model": t["model"]} if "model" in t else t.get("select", "all")
        out.append((sel, dict(parts)))
    if not out:
        raise InvalidRequest(f"{path}: no [[device]] tables; add one with select and partitions")
    return out


def _selected(inv: Inventory, sel: Any) -> list[Device]:
    devs = [d for d in inv.devices() if not d.lost]
    if sel == "all":
        return devs
    if isinstance(sel, dict):
        return [d for d in devs if str(sel["model"]).lower() in d.model.lower()]
    idx = sel if isinstance(sel, list) else [sel]
    return [d for d in devs if d.index in idx or d.id in idx]


def _fit(free: set[int], need: list[tuple[str, list[tuple[int, int]]]]) -> list[int] | None:
    """Starts for each needed profile (largest first) that do not overlap; None if none."""
    if not need:
        return []
    _, places = need[0]
    for start, size in places:
        slots = set(range(start, start + size))
        if slots <= free:
            rest = _fit(free - slots, need[1:])
            if rest is not None:
                return [start, *rest]
    return None


def plan_device(d: Device, wanted: dict[str, int], claimed: set[str]) -> DevicePlan:
    """What ``d`` needs to hold exactly ``wanted``; raises if a claim or the shape blocks it."""
    ref = f"{d.backend}:{d.index}"
    profiles = {p.name: p for p in d.profiles()}
    for name in wanted:
        if name not in profiles:
            raise InvalidRequest(f"{ref} offers no profile {name!r}; see 'accelpool layout {ref}'")
    dp = DevicePlan(ref)
    left = dict(wanted)
    kept = []
    parts = sorted(d.partitions(), key=lambda p: p.id not in claimed)  # claimed first
    for p in parts:
        if left.get(p.profile, 0) > 0 and p.complete:
            left[p.profile] -= 1
            dp.keep.append(p.id)
            kept.append(p)
        elif p.id in claimed:
            raise InvalidRequest(
                f"{ref}: partition {p.id} ({p.profile}) is claimed and the "
                "layout drops it; release the claim or keep it in the layout"
            )
        else:
            dp.destroy.append(p.id)
    slots = max((pl.start + pl.size for p in profiles.values() for pl in p.placements), default=0)
    need = [n for n, c in left.items() for _ in range(c)]
    placed = [n for n in need if profiles[n].placements]
    if placed:
        free = set(range(slots)) - {
            s
            for p in kept
            if p.placement
            for s in range(p.placement.start, p.placement.start + p.placement.size)
        }
        placed.sort(key=lambda n: -profiles[n].placements[0].size)
        starts = _fit(
            free, [(n, [(pl.start, pl.size) for pl in profiles[n].placements]) for n in placed]
        )
        if starts is None:
            raise InvalidRequest(
                f"{ref}: the layout {wanted} does not fit its placements; "
                "ask for fewer or smaller partitions"
            )
        dp.create += list(zip(placed, starts, strict=True))
    dp.create += [(n, None) for n in need if not profiles[n].placements]
    return dp


def plan(inv: Inventory, path: str, claimed: set[str] | None = None) -> list[DevicePlan]:
    """The change every selected device needs to match the layout in ``path``."""
    plans: dict[str, DevicePlan] = {}
    for sel, wanted in load(path):
        for d in _selected(inv, sel):
            plans[f"{d.backend}:{d.index}"] = plan_device(d, wanted, claimed or set())
    return list(plans.values())


def apply(inv: Inventory, path: str, claimed: set[str] | None = None) -> list[DevicePlan]:
    """Make every device match the layout, or, on any failure, leave all as it was."""
    plans = plan(inv, path, claimed)
    destroyed: list[tuple[Device, str, int | None]] = []
    created: list[Any] = []
    try:
        for dp in plans:
            d = inv.device(dp.ref)
            byid = {p.id: p for p in d.partitions()}
            for pid in dp.destroy:
                p = byid[pid]
                destroyed.append((d, p.profile, p.placement.start if p.placement else None))
                p.destroy()
            for name, start in dp.create:
                created.append(d.create_partition(name, start))
    except AccelPoolError as e:
        for p in reversed(created):
            p.destroy(force=True)
        for d, name, start in reversed(destroyed):
            d.create_partition(name, start)
        raise InvalidRequest(f"layout apply failed and was rolled back: {e}") from None
    return plans
