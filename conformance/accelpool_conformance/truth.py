"""What the suite knows without taking the backend's word for it.

Under a simulated fleet the fleet file is the ground truth: which models, how many,
in which order. Known models have known memory and compute. And a visibility
environment can be read for the ids it names: its tokens are compared with the ids
of the target (its native id, its index, the vendor ids among its attributes) and
with those of every other target. The checks in ``suite/`` call these helpers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from accelpool.types import AttributeValue, DeviceInfo, PartitionInfo, PartitionProfile
from accelpool_conformance import invariants as inv
from accelpool_conformance.context import SuiteContext
from accelpool_conformance.invariants import check

MIB = 1 << 20

#: Memory (bytes) and compute units of one device of a model, as the vendor's own
#: library reports them (NVML total memory and SMs; DCMI HBM/DDR size and AI cores;
#: CNDev memory and MLU cores per chip). Keyed by the fleet file's model name,
#: normalised (see :func:`norm`). A model missing here is checked for consistency only.
KNOWN_MODELS: dict[str, tuple[int, int]] = {
    "a100sxm440gb": (40960 * MIB, 108),
    "h10080gbhbm3": (81559 * MIB, 132),
    "h200": (143771 * MIB, 132),
    "910b3": (65536 * MIB, 20),
    "310p3": (24576 * MIB, 8),
    "mlu370x8": (24576 * MIB, 24),
    "mlu370x4": (24576 * MIB, 24),
    "toy8s": (8 << 30, 8),  # accelpool.testing's reference backend
}

#: Attribute names (the part after ``/``, any case) that carry the vendor's own index of
#: a device (Cambricon's ``index``, Ascend's ``logicID``): they must equal ``index``.
VENDOR_INDEX_NAMES = frozenset({"index", "logicid"})
#: Attribute name (after ``/``, any case) of a PCI bus id: a simulated fleet numbers its
#: devices in PCI bus order, as NVML and nvidia-smi do.
PCI_BUS_NAME = "pcibusid"


def norm(name: str) -> str:
    """``"NVIDIA A100-SXM4-40GB"`` -> ``"nvidiaa100sxm440gb"``: case and punctuation go."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class FleetEntry:
    """Consecutive fleet entries of one model: ``count`` cards of it."""

    model: str
    count: int


def fleet_entries(ctx: SuiteContext) -> tuple[list[FleetEntry], str] | None:
    """This backend's fleet entries in file order (merged where one model repeats), and
    where they come from; None when the run is not simulated."""
    raw_entries: Sequence[object] = ()
    source = ""
    if ctx.sim is not None:
        from accelpool.sim.fleet import load_fleet

        fleet = load_fleet(ctx.sim)
        raw_entries, source = fleet.for_backend(ctx.backend_name), fleet.source
    sim = getattr(ctx.raw_backend().context, "sim", None)
    if not raw_entries and sim is not None:
        # A plugin tested under another name than its fleet entries' (a wrapper): the
        # entries its simulator was handed are the truth then.
        raw_entries, source = sim.devices, f"simulated fleet {sim.fleet}"
    if not raw_entries:
        return None
    merged: list[FleetEntry] = []
    for e in raw_entries:
        model, count = str(getattr(e, "model", "")), int(getattr(e, "count", 1))
        if merged and norm(merged[-1].model) == norm(model):
            merged[-1] = FleetEntry(merged[-1].model, merged[-1].count + count)
        else:
            merged.append(FleetEntry(model, count))
    return merged, source


def _names_model(device: DeviceInfo, model: str) -> bool:
    return bool(norm(model)) and norm(model) in norm(device.model)


def _busid(value: AttributeValue) -> tuple[int, ...] | None:
    try:
        return tuple(int(part, 16) for part in re.split(r"[:.]", str(value)))
    except ValueError:
        return None


def _attr(device: DeviceInfo, names: frozenset[str]) -> list[tuple[str, AttributeValue]]:
    return [(k, v) for k, v in device.attributes.items() if k.rsplit("/", 1)[-1].lower() in names]


def check_vendor_index(devices: Sequence[DeviceInfo]) -> None:
    """Attributes that carry the vendor's own index agree with ``index``."""
    for d in devices:
        for key, value in _attr(d, VENDOR_INDEX_NAMES):
            check(
                str(value) == str(d.index),
                inv.INDEX_TRUTH,
                f"device {d.native_id} has index {d.index} but attribute {key} = {value!r}: "
                "backend:index must be the vendor's own number",
            )


def check_fleet_truth(devices: Sequence[DeviceInfo], entries: list[FleetEntry], src: str) -> None:
    """Discovery under a simulated fleet reports exactly its devices, in its order."""
    listed = [f"{d.index}:{d.model}" for d in devices]
    wanted = ", ".join(f"{e.model} x{e.count}" for e in entries)
    indexes = [d.index for d in devices]
    check(
        indexes == list(range(len(devices))),
        inv.INDEX_TRUTH,
        f"the fleet ({src}) numbers its {len(devices)} devices 0..{len(devices) - 1}; "
        f"discovery reports indexes {indexes}",
    )
    i = 0
    for e in entries:
        run = []
        while i < len(devices) and _names_model(devices[i], e.model):
            run.append(devices[i])
            i += 1
        check(
            run and len(run) % e.count == 0,
            inv.INDEX_TRUTH,
            f"the fleet ({src}) has {wanted}, in that order; discovery lists {len(run)} "
            f"device(s) of {e.model} where {e.count} cards (or a whole number of chips per "
            f"card) belong: {listed}",
        )
        facts = {(d.memory_bytes, d.compute_units) for d in run}
        check(
            len(facts) == 1,
            inv.INDEX_TRUTH,
            f"devices of one model ({e.model}) report different memory and compute: "
            + ", ".join(f"{d.index}: {d.memory_bytes} B / {d.compute_units} CU" for d in run),
        )
        known = KNOWN_MODELS.get(norm(e.model))
        if known is not None:
            for d in run:
                check(
                    (d.memory_bytes, d.compute_units) == known,
                    inv.INDEX_TRUTH,
                    f"device {d.index} ({d.native_id}) is a {e.model} with {known[0]} bytes "
                    f"and {known[1]} compute units; it reports {d.memory_bytes} bytes and "
                    f"{d.compute_units} compute units",
                )
    check(
        i == len(devices),
        inv.INDEX_TRUTH,
        f"the fleet ({src}) has {wanted}, in that order; discovery lists {listed}",
    )
    pci = frozenset({PCI_BUS_NAME})
    buses = [(d.index, str(v)) for d in devices for _, v in _attr(d, pci)]
    order = [b for b in (_busid(v) for _, v in sorted(buses)) if b is not None]
    check(
        order == sorted(order) and len(set(order)) == len(order),
        inv.INDEX_TRUTH,
        f"a simulated fleet numbers its devices in PCI bus order; by index they sit at {buses}",
    )


def check_same_facts(before: list[DeviceInfo], after: list[DeviceInfo], when: str) -> None:
    """Each device's index, model, memory and compute are what they were."""
    now = {d.native_id: d for d in after}
    for d in before:
        later = now.get(d.native_id)
        if later is None:
            continue  # a changed id is reported by the id checks
        changed = [
            f"{f} {getattr(d, f)!r} then {getattr(later, f)!r}"
            for f in ("index", "model", "memory_bytes", "compute_units")
            if getattr(d, f) != getattr(later, f)
        ]
        check(
            not changed,
            inv.DEVICE_FACTS,
            f"device {d.native_id} after {when}: " + "; ".join(changed),
        )


def check_matches_profile(part: PartitionInfo, prof: PartitionProfile, where: str) -> None:
    """A partition has its profile's memory, compute units and kind, not only its name."""
    got = (part.kind, part.memory_bytes, part.compute_units)
    want = (prof.kind, prof.memory_bytes, prof.compute_units)
    check(
        got == want,
        inv.CREATE_MATCHES_PROFILE,
        f"{where}: partition {part.native_id} is kind {got[0]!r} with {got[1]} bytes and "
        f"{got[2]} compute units; profile {prof.name!r} is kind {want[0]!r} with {want[1]} "
        f"bytes and {want[2]} compute units",
    )


def check_placed_at(part: PartitionInfo, start: int, what: str) -> None:
    """A partition created at a requested placement reports that placement."""
    at = "no placement" if part.placement is None else f"placement {part.placement.start}"
    check(
        part.placement is not None and part.placement.start == start,
        inv.PLACEMENT_HONOURED,
        f"{what} gave {part.native_id} at {at}: the requested placement {start} was ignored",
    )


# -- reading visibility environments -------------------------------------------------
def tokens(env: Mapping[str, str]) -> set[tuple[str, str]]:
    """Every ``(variable, token)`` of an environment, values split at commas, semicolons
    and white space."""
    return {(k, t) for k, v in env.items() for t in re.split(r"[,;\s]+", v) if t}


def is_ordinal(token: str) -> bool:
    return token.isdigit()


def own_ids(
    target: DeviceInfo | PartitionInfo, peers: Sequence[DeviceInfo | PartitionInfo]
) -> set[str]:
    """The ids naming ``target`` among ``peers``: its native id, and each attribute value
    of it that no peer shares under the same name (a UUID, a vendor index, a device node).
    A device's index is one of them."""
    out = {target.native_id}
    if isinstance(target, DeviceInfo):
        out.add(str(target.index))
    others = [p for p in peers if p.native_id != target.native_id]
    for key, value in target.attributes.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue
        if all(str(o.attributes.get(key)) != str(value) for o in others):
            out.add(str(value))
    return out


def check_device_envs(devices: Sequence[DeviceInfo], envs: Mapping[str, Mapping[str, str]]) -> None:
    """A whole device's visibility variables name it: an ordinal token (an index, a logic
    id) is its own index or vendor id, and no token is another device's id."""
    from accelpool.session._worker import is_visibility_var

    for d in devices:
        env = envs.get(d.native_id)
        if env is None:
            continue
        mine = own_ids(d, devices)
        for var, tok in sorted(tokens(env)):
            if not is_visibility_var(var) or tok in mine:
                continue
            others = [o.native_id for o in devices if o is not d and tok in own_ids(o, devices)]
            check(
                not is_ordinal(tok),
                inv.VISIBILITY_ORDINALS,
                f"visibility_env([{d.native_id}]) sets {var}={env[var]!r}: ordinal {tok} is not "
                f"index {d.index} of the target nor one of its vendor ids"
                + (f"; it names {others}" if others else ""),
            )
            check(
                not others,
                inv.VISIBILITY,
                f"visibility_env([{d.native_id}]) sets {var}={env[var]!r}, naming {others}",
            )


def check_partition_envs(
    parts: Sequence[PartitionInfo], envs: Mapping[str, Mapping[str, str]]
) -> None:
    """Live partitions of one device: each environment names its partition and no other.

    Tokens every partition's environment shares (a runtime switch, an ordinal counted
    inside the container the environment sets up) name none of them and are set aside.
    A ``process``-scope partition exists only in its creating process, so no environment
    can name it to another: its environment must only not name another partition.
    """
    from accelpool.session._worker import is_visibility_var

    toks = {p.native_id: tokens(envs[p.native_id]) for p in parts}
    common = set.intersection(*toks.values()) if toks else set()
    ids = {p.native_id: own_ids(p, parts) for p in parts}
    for p in parts:
        env = dict(envs[p.native_id])
        own = toks[p.native_id] - common
        for q in parts:
            if q is p:
                continue
            named = sorted(t for _, t in own if t in ids[q.native_id] - ids[p.native_id])
            check(
                not named,
                inv.VISIBILITY_PER_PARTITION,
                f"visibility_env([{p.native_id}]) = {env} names partition {q.native_id} "
                f"(by {named})",
            )
            check(
                p.scope != "device" or envs[q.native_id] != envs[p.native_id],
                inv.VISIBILITY_PER_PARTITION,
                f"live partitions {p.native_id} and {q.native_id} of one device get the same "
                f"environment {env}",
            )
        if p.scope != "device":
            continue
        check(
            any(t in ids[p.native_id] for _, t in own),
            inv.VISIBILITY_PER_PARTITION,
            f"visibility_env([{p.native_id}]) = {env} names none of the partition's ids "
            f"{sorted(ids[p.native_id])} (its native id, or a vendor id among its attributes)",
        )
        stray = sorted(f"{v}={t}" for v, t in own if is_ordinal(t) and t not in ids[p.native_id])
        # An ordinal every partition's environment shares counts what the environment
        # makes visible (the container's own numbering): one target, so only 0.
        stray += sorted(
            f"{v}={t}"
            for v, t in toks[p.native_id] & common
            if is_visibility_var(v) and is_ordinal(t) and t != "0" and t not in ids[p.native_id]
        )
        check(
            not stray,
            inv.VISIBILITY_ORDINALS,
            f"visibility_env([{p.native_id}]) = {env} sets ordinals {stray} that are none of "
            f"the partition's ids {sorted(ids[p.native_id])}",
        )
