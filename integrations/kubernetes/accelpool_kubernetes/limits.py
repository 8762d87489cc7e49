"""The ResourceSlice rules the JSON schemas do not encode (admission and scheduler checks).

From kubernetes/api ``resource/v1/types.go`` (v0.34 and v0.35) and the admission
validation: counts per slice, device and counter set; DNS-label names; exactly one
node selection field; counters-or-devices from 1.35; pool consistency; references
from devices to counter sets and counters.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from accelpool_kubernetes.names import is_dns_label, is_dns_subdomain, is_qualified_name

NODE_FIELDS = ("nodeName", "nodeSelector", "allNodes", "perDeviceNodeSelection")


def slice_problems(slices: Sequence[dict[str, Any]], version: str) -> list[str]:
    """Every broken rule, as readable lines; empty when all slices keep the limits."""
    out: list[str] = []
    pools: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in slices:
        name = s.get("metadata", {}).get("name", "?")
        spec = s.get("spec", {})
        where = f"slice {name}"
        if not is_dns_subdomain(name):
            out.append(f"{where}: name is not a DNS subdomain")
        if not is_dns_subdomain(spec.get("driver", "")):
            out.append(f"{where}: driver is not a DNS subdomain")
        if sum(1 for f in NODE_FIELDS if spec.get(f) not in (None, False)) != 1:
            out.append(f"{where}: exactly one of {', '.join(NODE_FIELDS)} is required")
        pools[spec.get("pool", {}).get("name", "")].append(s)
        out.extend(_slice(where, spec, version))
    for pool, members in pools.items():
        out.extend(_pool(pool, members, version))
    return out


def _slice(where: str, spec: dict[str, Any], version: str) -> list[str]:
    out: list[str] = []
    sets = spec.get("sharedCounters") or []
    devices = spec.get("devices") or []
    if version != "1.34" and sets and devices:
        out.append(f"{where}: only one of sharedCounters or devices is allowed")
    if version == "1.34":
        if sum(len(cs.get("counters", {})) for cs in sets) > 32:
            out.append(f"{where}: more than 32 counters in all counter sets")
        consumed = sum(
            len(c.get("counters", {})) for d in devices for c in d.get("consumesCounters") or []
        )
        if consumed > 1024:
            out.append(f"{where}: {consumed} consumed counters, more than 1024")
        if len(devices) > 128:
            out.append(f"{where}: {len(devices)} devices, more than 128")
    else:
        if len(sets) > 8:
            out.append(f"{where}: {len(sets)} counter sets, more than 8")
        limit = 64 if any(d.get("consumesCounters") or d.get("taints") for d in devices) else 128
        if len(devices) > limit:
            out.append(f"{where}: {len(devices)} devices, more than {limit}")
    seen: set[str] = set()
    for cs in sets:
        if not is_dns_label(cs.get("name", "")):
            out.append(f"{where}: counter set name {cs.get('name')!r} is not a DNS label")
        if cs.get("name") in seen:
            out.append(f"{where}: counter set {cs.get('name')} is named twice")
        seen.add(cs.get("name", ""))
        counters = cs.get("counters", {})
        if len(counters) > 32:
            out.append(f"{where}: counter set {cs.get('name')} has more than 32 counters")
        out.extend(
            f"{where}: counter name {c!r} is not a DNS label"
            for c in counters
            if not is_dns_label(c)
        )
    for d in devices:
        out.extend(_device(where, d, version))
    return out


def _device(where: str, d: dict[str, Any], version: str) -> list[str]:
    out: list[str] = []
    name = d.get("name", "")
    at = f"{where}: device {name}"
    if not is_dns_label(name):
        out.append(f"{at}: name is not a DNS label")
    attrs, caps = d.get("attributes") or {}, d.get("capacity") or {}
    if len(attrs) + len(caps) > 32:
        out.append(f"{at}: {len(attrs) + len(caps)} attributes and capacities, more than 32")
    for key in [*attrs, *caps]:
        if not is_qualified_name(key):
            out.append(f"{at}: {key!r} is not a qualified name")
    for key, value in attrs.items():
        if len([v for v in value.values() if v is not None]) != 1:
            out.append(f"{at}: attribute {key} must set exactly one value")
        for kind in ("string", "version"):
            if isinstance(value.get(kind), str) and len(value[kind]) > 64:
                out.append(f"{at}: attribute {key} is longer than 64 characters")
    consumes = d.get("consumesCounters") or []
    if version != "1.34" and len(consumes) > 2:
        out.append(f"{at}: more than 2 consumesCounters entries")
    if len(consumes) > 32:
        out.append(f"{at}: more than 32 consumesCounters entries")
    for c in consumes:
        if len(c.get("counters", {})) > 32:
            out.append(f"{at}: consumes more than 32 counters of {c.get('counterSet')}")
    return out


def _pool(pool: str, members: list[dict[str, Any]], version: str) -> list[str]:
    out: list[str] = []
    where = f"pool {pool}"
    if len(pool) > 253 or not all(is_dns_subdomain(p) for p in pool.split("/")):
        out.append(f"{where}: name is not DNS subdomains separated by '/'")
    gens = {m["spec"]["pool"].get("generation") for m in members}
    counts = {m["spec"]["pool"].get("resourceSliceCount") for m in members}
    if len(gens) != 1:
        out.append(f"{where}: slices disagree on the generation ({sorted(map(str, gens))})")
    if counts != {len(members)}:
        out.append(
            f"{where}: resourceSliceCount {sorted(map(str, counts))} but {len(members)} slices"
        )
    names: set[str] = set()
    pool_sets: dict[str, set[str]] = {}
    for m in members:
        for cs in m["spec"].get("sharedCounters") or []:
            if cs["name"] in pool_sets:
                out.append(f"{where}: counter set {cs['name']} is defined twice")
            pool_sets[cs["name"]] = set(cs.get("counters", {}))
    for m in members:
        local = {
            cs["name"]: set(cs.get("counters", {})) for cs in m["spec"].get("sharedCounters") or []
        }
        visible = local if version == "1.34" else pool_sets
        for d in m["spec"].get("devices") or []:
            if d["name"] in names:
                out.append(f"{where}: device {d['name']} is published twice")
            names.add(d["name"])
            for c in d.get("consumesCounters") or []:
                known = visible.get(c.get("counterSet", ""))
                if known is None:
                    out.append(
                        f"{where}: device {d['name']} consumes unknown set {c.get('counterSet')}"
                    )
                    continue
                missing = set(c.get("counters", {})) - known
                if missing:
                    out.append(f"{where}: device {d['name']} consumes unknown {sorted(missing)}")
    return out
