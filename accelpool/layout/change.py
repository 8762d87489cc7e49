"""Planning and applying a layout: the change each device needs, carried out all-or-nothing.

:func:`plan` computes, for every selected device, which partitions to keep, destroy and
create (with placements that fit, whatever order the layout lists its profiles in) and
whether MIG mode must change; nothing is touched. :func:`apply` carries the plan out
step by step, recording how to undo each step; when a step fails every step done is
undone in reverse, MIG mode changes included, and the error says so.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from accelpool.capabilities import Capability
from accelpool.errors import AccelPoolError, InvalidRequest
from accelpool.layout.spec import Entry, load, resolve

if TYPE_CHECKING:
    from accelpool.inventory import Device, Inventory
    from accelpool.types import PartitionProfile

Claimed = Mapping[str, str] | Collection[str] | None


@dataclass
class DevicePlan:
    """The change one device needs: MIG mode, partitions kept, destroyed and created."""

    ref: str
    keep: list[str] = field(default_factory=list)
    destroy: list[str] = field(default_factory=list)  # partition ids
    create: list[tuple[str, int | None]] = field(default_factory=list)  # profile, start
    mig: str | None = None  # "enable" or "disable" where MIG mode must change

    @property
    def changes(self) -> bool:
        return bool(self.destroy or self.create or self.mig)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.ref,
            "mig": self.mig,
            "keep": self.keep,
            "destroy": self.destroy,
            "create": [{"profile": p, "start": s} for p, s in self.create],
        }


def live_claims() -> dict[str, str]:
    """Live claims on this host: target id -> who holds it."""
    from accelpool.session import ClaimStore

    try:
        return {c.target: c.describe() for c in ClaimStore().claims() if c.holder_alive()}
    except AccelPoolError:
        return {}


def _holders(claimed: Claimed) -> dict[str, str]:
    if claimed is None:
        return live_claims()
    if isinstance(claimed, Mapping):
        return dict(claimed)
    return dict.fromkeys(claimed, "a holder")


def mig_capable(d: Device) -> bool:
    """Whether ``d`` has a MIG mode this backend can switch."""
    return (
        d.capabilities.supports(Capability.MIG_MODE)
        and any(k.endswith("/migCapable") and v is True for k, v in d.attributes.items())
        and callable(getattr(d.backend_instance, "set_mig_mode", None))
    )


def _fit(free: set[int], need: list[list[tuple[int, int]]]) -> list[int] | None:
    """Starts for each needed profile's placements that do not overlap; None if none."""
    if not need:
        return []
    for start, size in need[0]:
        slots = set(range(start, start + size))
        if slots <= free:
            rest = _fit(free - slots, need[1:])
            if rest is not None:
                return [start, *rest]
    return None


def _slots(profiles: Mapping[str, PartitionProfile]) -> int:
    return max((pl.start + pl.size for p in profiles.values() for pl in p.placements), default=0)


def _try(
    d: Device, wanted: dict[str, int], holders: Mapping[str, str], keep_free: bool
) -> DevicePlan | None:
    """The plan keeping matching partitions (unclaimed ones too if ``keep_free``)."""
    ref = f"{d.backend}:{d.index}"
    profiles = {p.name: p for p in d.profiles()}
    dp = DevicePlan(ref)
    left = dict(wanted)
    kept = []
    for p in sorted(d.partitions(), key=lambda p: p.id not in holders):  # claimed first
        if p.complete and left.get(p.profile, 0) > 0 and (keep_free or p.id in holders):
            left[p.profile] -= 1
            dp.keep.append(p.id)
            kept.append(p)
        elif p.id in holders:
            raise InvalidRequest(
                f"{ref}: partition {p.id} ({p.profile}) is claimed by {holders[p.id]} and the "
                "layout drops it; release the claim or keep it in the layout"
            )
        else:
            dp.destroy.append(p.id)
    need = [n for n, c in left.items() for _ in range(c)]
    placed = sorted(
        (n for n in need if profiles[n].placements), key=lambda n: -profiles[n].placements[0].size
    )
    if placed:
        free = set(range(_slots(profiles))) - {
            s
            for p in kept
            if p.placement
            for s in range(p.placement.start, p.placement.start + p.placement.size)
        }
        starts = _fit(
            free, [[(pl.start, pl.size) for pl in profiles[n].placements] for n in placed]
        )
        if starts is None:
            return None
        dp.create += list(zip(placed, starts, strict=True))
    dp.create += [(n, None) for n in need if not profiles[n].placements]
    return dp


def plan_device(d: Device, entry: Entry | dict[str, int], claimed: Claimed = None) -> DevicePlan:
    """What ``d`` needs to match ``entry``; raises if a claim, the mode or the shape blocks it."""
    if isinstance(entry, dict):
        entry = Entry(partitions=entry)
    holders = _holders(claimed)
    ref = f"{d.backend}:{d.index}"
    profiles = {p.name: p for p in d.profiles()}
    capable = mig_capable(d)
    mig_on = capable and any(p.kind == "mig" for p in profiles.values())
    wanted = entry.partitions
    want_mig = entry.mig
    if (
        want_mig is None
        and capable
        and not mig_on
        and wanted
        and any(c and n not in profiles for n, c in wanted.items())
    ):
        want_mig = True  # the profiles asked for exist only in MIG mode
    if want_mig is not None and not capable:
        if want_mig:
            raise InvalidRequest(
                f"{ref} ({d.model}) has no MIG mode accelpool can switch; "
                "drop mig / mig-enabled from the layout for it"
            )
        want_mig = None  # mig-enabled: false on a device without MIG: nothing to do
    if want_mig is False:
        wanted = {}
    if want_mig is True and not mig_on:
        # Profiles and placements are known once MIG is on: apply plans them then.
        dp = DevicePlan(ref, mig="enable")
        busy = [p.id for p in d.partitions()]
        if busy:
            raise InvalidRequest(
                f"{ref}: enabling MIG needs the {len(busy)} partition(s) on "
                "it destroyed first; destroy them or leave MIG mode alone"
            )
        dp.create = [(n, None) for n, c in (wanted or {}).items() for _ in range(c)]
        return dp
    if wanted is None:
        wanted = {}
        for p in d.partitions():
            wanted[p.profile] = wanted.get(p.profile, 0) + 1
    for name, count in wanted.items():
        if count and name not in profiles:
            raise InvalidRequest(
                f"{ref} offers no profile {name!r}; see 'accelpool profiles {ref}'"
            )
    found = _try(d, wanted, holders, keep_free=True) or _try(d, wanted, holders, keep_free=False)
    if found is None:
        raise InvalidRequest(
            f"{ref}: the layout {wanted} does not fit its placements; "
            "ask for fewer or smaller partitions"
        )
    dp = found
    if d.id in holders and dp.changes:
        raise InvalidRequest(
            f"{ref} is claimed as a whole by {holders[d.id]}; release the "
            "claim before changing its partitions"
        )
    if want_mig is False and mig_on:
        dp.mig = "disable"
    return dp


def plan(
    inv: Inventory,
    path: str | list[Entry],
    claimed: Claimed = None,
    *,
    config: str | None = None,
    host: str | None = None,
) -> list[DevicePlan]:
    """The change every selected device needs to match the layout (nothing is changed).

    ``path`` is a layout file (TOML), or with ``config`` a mig-parted ``mig-configs``
    YAML file and the name of one of its configs; or a list of :class:`Entry`.
    """
    entries = load(path, config) if isinstance(path, str) else path
    holders = _holders(claimed)
    return [plan_device(d, e, holders) for d, e in resolve(entries, inv.devices(), host)]


def _set_mig(d: Device, on: bool) -> bool:
    """Switch MIG mode; True if it changed. A change left pending is a failure."""
    backend: Any = d.backend_instance  # mig_capable() checked it has set_mig_mode
    change = backend.set_mig_mode(d.info, on)
    if change.status == "pending":
        with suppress(AccelPoolError):  # withdraw the pending request: leave it as it was
            backend.set_mig_mode(d.info, not on)
        raise InvalidRequest(f"MIG mode on {d.id} is only pending: {change.reason}")
    return bool(change.status == "applied")


def apply(
    inv: Inventory,
    path: str | list[Entry],
    claimed: Claimed = None,
    *,
    config: str | None = None,
    host: str | None = None,
) -> list[DevicePlan]:
    """Make every selected device match the layout or, on any failure, leave all as it was."""
    entries = load(path, config) if isinstance(path, str) else path
    holders = _holders(claimed)
    pairs = resolve(entries, inv.devices(), host)
    plans = [plan_device(d, e, holders) for d, e in pairs]
    undo: list[tuple[str, Callable[[], object]]] = []
    try:
        for (d, e), dp in zip(pairs, plans, strict=True):
            if not dp.changes:
                continue
            if dp.mig == "enable":
                if _set_mig(d, True):
                    undo.append((f"disable MIG on {dp.ref}", partial(_set_mig, d, False)))
                else:
                    dp.mig = None
                again = plan_device(d, Entry(partitions=e.partitions or {}), holders)
                dp.keep, dp.destroy, dp.create = again.keep, again.destroy, again.create
            byid = {p.id: p for p in d.partitions()}
            for pid in dp.destroy:
                p = byid[pid]
                start = p.placement.start if p.placement else None
                p.destroy()
                undo.append(
                    (
                        f"remake {p.profile} on {dp.ref}",
                        partial(d.create_partition, p.profile, start),
                    )
                )
            for name, start in dp.create:
                made = d.create_partition(name, start)
                undo.append((f"destroy {made.id}", partial(made.destroy, force=True)))
            if dp.mig == "disable":
                if _set_mig(d, False):
                    undo.append((f"enable MIG on {dp.ref}", partial(_set_mig, d, True)))
                else:
                    dp.mig = None
    except AccelPoolError as err:
        left = []
        for what, step in reversed(undo):
            try:
                step()
            except AccelPoolError as u:
                left.append(f"{what} ({u})")
        if left:
            raise InvalidRequest(
                f"layout apply failed ({err}) and could not undo: " + "; ".join(left)
            ) from None
        raise InvalidRequest(f"layout apply failed and was rolled back: {err}") from None
    return plans
