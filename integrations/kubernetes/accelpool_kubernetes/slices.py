"""ResourceSlices (``resource.k8s.io/v1``) of this host, laid out per Kubernetes version.

1.35 and later: per pool, counters-only slices (at most 8 counter sets each) and device
slices of at most 64 devices. 1.34: a slice may not hold more than 32 counters in all,
and a device consumes only counters of its own slice, so each partitionable device gets
one slice with its counter set and its devices. One pool per node and backend; every
slice of a pool carries the pool's generation and the pool's slice count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client as k8s

from accelpool.errors import InvalidRequest
from accelpool.inventory import Inventory
from accelpool.types import AttributeValue
from accelpool_kubernetes.catalog import LogicalDevice, PhysicalDevice, attributes_of, host_catalog
from accelpool_kubernetes.names import (
    DEFAULT_DRIVER,
    check_driver,
    check_node,
    check_version,
    dns_label,
    is_qualified_name,
    quantity,
)

STANDARD = "resource.kubernetes.io/"
MAX_ATTRS = 32
_SEMVER = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*)){0,2}$")


def _value(name: str, value: AttributeValue) -> k8s.V1DeviceAttribute | None:
    if isinstance(value, bool):
        return k8s.V1DeviceAttribute(bool=value)
    if isinstance(value, int):
        return k8s.V1DeviceAttribute(int=value) if -(2**63) <= value < 2**63 else None
    text = str(value)
    if len(text) > 64:
        return None
    low = name.rpartition("/")[2].lower()
    if ("version" in low or "capability" in low) and _SEMVER.match(text):
        parts = [*text.split("."), "0", "0"][:3]
        return k8s.V1DeviceAttribute(version=".".join(parts))
    return k8s.V1DeviceAttribute(string=text)


def _pci(attrs: Mapping[str, AttributeValue]) -> str | None:
    """``resource.kubernetes.io/pciBusID`` (``0000:07:00.0``) from the vendor's bus id."""
    for k, v in attrs.items():
        if k.endswith("/pciBusID") and isinstance(v, str):
            m = re.match(r"^(?:([0-9a-fA-F]{4,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$", v)
            if m:
                domain = (m.group(1) or "0000")[-4:]
                return f"{domain}:{m.group(2)}:{m.group(3)}.{m.group(4)}".lower()
    return None


def neutral_attributes(ld: LogicalDevice) -> dict[str, AttributeValue]:
    """The vendor-neutral attributes (qualified by the driver name when published)."""
    dev = ld.device
    out: dict[str, AttributeValue] = {
        "backend": ld.backend,
        "vendor": dev.vendor,
        "model": dev.model,
        "type": "device" if ld.profile is None else "partition",
        "kind": ld.kind,
        "index": dev.index,
        "parentID": dev.id,
        "live": ld.profile is None or ld.partition is not None,
    }
    if ld.profile is not None:
        out["profile"] = ld.profile.name
    if ld.placement is not None:
        out["placementStart"] = ld.placement.start
        out["placementSize"] = ld.placement.size
    if ld.target_id is not None:
        out["id"] = ld.target_id
    return out


def device_model(ld: LogicalDevice, counter_set: str | None) -> k8s.V1Device:
    attrs: dict[str, k8s.V1DeviceAttribute] = {}
    capacity = {
        "memory": k8s.V1DeviceCapacity(value=quantity(ld.memory_bytes)),
        "computeUnits": k8s.V1DeviceCapacity(value=str(ld.compute_units)),
    }
    budget = MAX_ATTRS - len(capacity)
    merged: list[tuple[str, AttributeValue]] = list(neutral_attributes(ld).items())
    vendor = attributes_of(ld)
    pci = _pci(vendor)
    if pci is not None:
        merged.append((STANDARD + "pciBusID", pci))
    merged.extend(vendor.items())
    for name, value in merged:
        if len(attrs) >= budget:
            break
        if name in attrs or not is_qualified_name(name):
            continue
        v = _value(name, value)
        if v is not None:
            attrs[name] = v
    consumes = None
    if ld.consumes and counter_set is not None:
        consumes = [
            k8s.V1DeviceCounterConsumption(
                counter_set=counter_set,
                counters={
                    k: k8s.V1Counter(value=quantity(v)) for k, v in sorted(ld.consumes.items())
                },
            )
        ]
    return k8s.V1Device(
        name=ld.name, attributes=attrs, capacity=capacity, consumes_counters=consumes
    )


def counter_set_model(pd: PhysicalDevice) -> k8s.V1CounterSet:
    return k8s.V1CounterSet(
        name=pd.counter_set,
        counters={k: k8s.V1Counter(value=quantity(v)) for k, v in sorted(pd.counters.items())},
    )


def _chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def pool_slices(
    pool: Sequence[PhysicalDevice],
    *,
    node: str,
    driver: str,
    backend: str,
    version: str,
    generation: int = 1,
) -> list[k8s.V1ResourceSlice]:
    """The slices of one pool (one node, one backend)."""
    specs: list[tuple[list[k8s.V1CounterSet] | None, list[k8s.V1Device] | None]] = []
    partitionable = [pd for pd in pool if pd.counters]
    plain = [ld for pd in pool if not pd.counters for ld in pd.devices]
    if version == "1.34":
        for pd in partitionable:
            specs.append(
                ([counter_set_model(pd)], [device_model(ld, pd.counter_set) for ld in pd.devices])
            )
    else:
        for group in _chunks(partitionable, 8):
            specs.append(([counter_set_model(pd) for pd in group], None))
        devices = [device_model(ld, pd.counter_set) for pd in partitionable for ld in pd.devices]
        specs.extend((None, chunk) for chunk in _chunks(devices, 64))
    specs.extend((None, [device_model(ld, None) for ld in chunk]) for chunk in _chunks(plain, 128))
    pool_name = f"{node}/{backend}"
    out = []
    for i, (counters, members) in enumerate(specs):
        name = dns_label(f"{node}-{driver}-{backend}-{i}")
        out.append(
            k8s.V1ResourceSlice(
                api_version="resource.k8s.io/v1",
                kind="ResourceSlice",
                metadata=k8s.V1ObjectMeta(
                    name=name,
                    labels={
                        "app.kubernetes.io/managed-by": "accelpool",
                        "accelpool.dev/backend": backend,
                    },
                ),
                spec=k8s.V1ResourceSliceSpec(
                    driver=driver,
                    node_name=node,
                    pool=k8s.V1ResourcePool(
                        name=pool_name, generation=generation, resource_slice_count=len(specs)
                    ),
                    shared_counters=counters,
                    devices=members,
                ),
            )
        )
    return out


def host_slices(
    inv: Inventory,
    *,
    node: str,
    driver: str = DEFAULT_DRIVER,
    version: str = "1.35",
    generation: int = 1,
    bindings: Mapping[str, str] | None = None,
) -> list[k8s.V1ResourceSlice]:
    """Every ResourceSlice of this host, checked against the limits the schemas leave out."""
    version = check_version(version)
    check_driver(driver)
    check_node(node)
    out: list[k8s.V1ResourceSlice] = []
    for backend, pool in host_catalog(inv, bindings).items():
        out.extend(
            pool_slices(
                pool,
                node=node,
                driver=driver,
                backend=backend,
                version=version,
                generation=generation,
            )
        )
    from accelpool_kubernetes.limits import slice_problems

    problems = slice_problems([to_dict(s) for s in out], version)
    if problems:
        raise InvalidRequest(
            "the ResourceSlices of this host break Kubernetes' limits: " + "; ".join(problems[:3])
        )
    return out


def to_dict(obj: Any) -> Any:
    """A client model as the API server's JSON (camelCase, no nulls)."""
    return k8s.ApiClient().sanitize_for_serialization(obj)
