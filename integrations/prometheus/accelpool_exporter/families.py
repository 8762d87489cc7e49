"""Metric families built from a :class:`~accelpool_exporter.readings.Snapshot`.

Three sets, so that dashboards people already have keep working:

- every backend: the vendor-neutral ``accelpool_*`` families, in base units (bytes,
  a 0 to 1 ratio, degrees Celsius, watts);
- NVIDIA devices and MIG partitions: dcgm-exporter's names, labels and units
  (framebuffer in MiB, utilisation in percent);
- Ascend devices and vNPUs: npu-exporter's names, labels and units (HBM in MB).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from accelpool_exporter.readings import DeviceReading, PartitionReading, Snapshot

MIB = 1 << 20
_DEV = ["backend", "device", "index", "model", "Hostname"]


def _set(family: GaugeMetricFamily, labels: list[str], value: float | int | None) -> None:
    if value is not None:
        family.add_metric(labels, float(value))


def neutral(snap: Snapshot) -> Iterator[Metric]:
    """The ``accelpool_*`` families, for every backend."""
    up = GaugeMetricFamily(
        "accelpool_backend_up", "1 if the backend answered this scrape, else 0", labels=["backend"]
    )
    for name, ok in sorted(snap.backends.items()):
        up.add_metric([name], 1.0 if ok else 0.0)
    yield up

    fams = {
        "used": ("accelpool_device_memory_used_bytes", "Device memory in use, in bytes"),
        "total": ("accelpool_device_memory_total_bytes", "Device memory, in bytes"),
        "util": ("accelpool_device_utilization_ratio", "Compute utilisation, 0 to 1"),
        "temp": ("accelpool_device_temperature_celsius", "Device temperature, in degrees C"),
        "power": ("accelpool_device_power_watts", "Device power draw, in watts"),
        "healthy": ("accelpool_device_healthy", "1 if the device answers, 0 if it is lost"),
    }
    g = {k: GaugeMetricFamily(n, h, labels=_DEV) for k, (n, h) in fams.items()}
    parts = GaugeMetricFamily(
        "accelpool_partitions", "Live partitions by profile", labels=[*_DEV, "profile", "kind"]
    )
    avail = GaugeMetricFamily(
        "accelpool_profile_available",
        "How many more partitions of the profile fit on the device now",
        labels=[*_DEV, "profile"],
    )
    for d in snap.devices:
        labels = [d.backend, d.id, str(d.index), d.model, snap.hostname]
        t = d.telemetry
        _set(g["used"], labels, t.memory_used_bytes)
        _set(g["total"], labels, t.memory_total_bytes or d.memory_bytes)
        util = t.utilization_percent
        _set(g["util"], labels, None if util is None else util / 100.0)
        _set(g["temp"], labels, t.temperature_c)
        _set(g["power"], labels, t.power_w)
        _set(g["healthy"], labels, 1 if d.healthy else 0)
        counts: dict[tuple[str, str], int] = {}
        for p in d.partitions:
            counts[(p.profile, p.kind)] = counts.get((p.profile, p.kind), 0) + 1
        for (profile, kind), n in sorted(counts.items()):
            parts.add_metric([*labels, profile, kind], float(n))
        for profile, n in sorted(d.available.items()):
            avail.add_metric([*labels, profile], float(n))
    yield from g.values()
    yield parts
    yield avail

    claim = GaugeMetricFamily(
        "accelpool_claim_info", "A target held by a session or a named holder (always 1)",
        labels=["target", "holder", "Hostname"],
    )
    for c in snap.claims:
        claim.add_metric([c.target, c.holder, snap.hostname], 1.0)
    yield claim


_DCGM = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname"]
_DCGM_MIG = [*_DCGM, "GPU_I_PROFILE", "GPU_I_ID"]


def _dcgm_labels(d: DeviceReading, host: str) -> list[str]:
    a = d.attributes
    return [
        str(d.index), str(a.get("nvidia.com/uuid", d.id.split(":", 1)[-1])),
        str(a.get("nvidia.com/pciBusID", "")), f"nvidia{d.index}", d.model, host,
    ]


def dcgm(snap: Snapshot) -> Iterator[Metric]:
    """dcgm-exporter's default families for NVIDIA GPUs and their MIG devices."""
    util = GaugeMetricFamily("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", labels=_DCGM)
    temp = GaugeMetricFamily("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", labels=_DCGM)
    power = GaugeMetricFamily("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", labels=_DCGM)
    # dcgm-exporter reports framebuffer per GPU and per MIG device in one family each,
    # the MIG series told apart by GPU_I_PROFILE / GPU_I_ID; GPU series leave them empty.
    used = GaugeMetricFamily(
        "DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", labels=_DCGM_MIG
    )
    free = GaugeMetricFamily(
        "DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", labels=_DCGM_MIG
    )
    for d in snap.devices:
        if d.backend != "nvidia" or not d.healthy:
            continue
        labels = _dcgm_labels(d, snap.hostname)
        t = d.telemetry
        _set(util, labels, t.utilization_percent)
        _set(temp, labels, t.temperature_c)
        _set(power, labels, t.power_w)
        _fb(used, free, [*labels, "", ""], t.memory_used_bytes, t.memory_total_bytes)
        for p in d.partitions:
            if p.kind != "mig":
                continue
            gi = p.attributes.get("nvidia.com/gpuInstanceId", "")
            mt = p.telemetry
            _fb(used, free, [*labels, p.profile, str(gi)], mt.memory_used_bytes,
                mt.memory_total_bytes)
    yield from (util, temp, power, used, free)


def _fb(
    used: GaugeMetricFamily, free: GaugeMetricFamily, labels: list[str],
    used_b: int | None, total_b: int | None,
) -> None:
    if used_b is None:
        return
    used.add_metric(labels, used_b // MIB)
    if total_b is not None:
        free.add_metric(labels, max(total_b - used_b, 0) // MIB)


_NPU = ["id", "model_name", "vdie_id", "v_dev_id", "is_virtual", "Hostname"]
MB = 1 << 20  # npu-exporter's "MB" are mebibytes, as DCMI reports them


def _npu_labels(d: DeviceReading, p: PartitionReading | None, host: str) -> list[str]:
    a: dict[str, Any] = d.attributes
    ident = str(a.get("huawei.com/logicID", d.index))
    vdie = str(a.get("huawei.com/dieID", ""))
    if p is None:
        return [ident, d.model, vdie, "", "false", host]
    return [ident, d.model, vdie, str(p.attributes.get("huawei.com/vnpuID", "")), "true", host]


def _mb(value: int | None) -> int | None:
    return None if value is None else value // MB


def npu(snap: Snapshot) -> Iterator[Metric]:
    """npu-exporter's chip families for Ascend NPUs (and their vNPUs' memory)."""
    helps = {
        "util": ("npu_chip_info_utilization", "AI core utilisation (%)"),
        "used": ("npu_chip_info_hbm_used_memory", "HBM used (MB)"),
        "total": ("npu_chip_info_hbm_total_memory", "HBM total (MB)"),
        "temp": ("npu_chip_info_temperature", "Chip temperature (C)"),
        "power": ("npu_chip_info_power", "Chip power (W)"),
        "health": ("npu_chip_info_health_status", "1 healthy, 0 unhealthy"),
    }
    fam = {k: GaugeMetricFamily(n, h, labels=_NPU) for k, (n, h) in helps.items()}
    for d in snap.devices:
        if d.backend != "ascend":
            continue
        labels = _npu_labels(d, None, snap.hostname)
        t = d.telemetry
        _set(fam["health"], labels, 1 if d.healthy else 0)
        if not d.healthy:
            continue
        _set(fam["util"], labels, t.utilization_percent)
        _set(fam["used"], labels, _mb(t.memory_used_bytes))
        _set(fam["total"], labels, _mb(t.memory_total_bytes))
        _set(fam["temp"], labels, t.temperature_c)
        _set(fam["power"], labels, t.power_w)
        for p in d.partitions:
            pl = _npu_labels(d, p, snap.hostname)
            mt = p.telemetry
            _set(fam["total"], pl, (mt.memory_total_bytes or p.memory_bytes) // MB)
            _set(fam["used"], pl, _mb(mt.memory_used_bytes))
    yield from fam.values()


def all_families(snap: Snapshot) -> Iterator[Metric]:
    """Every family the exporter serves, for one snapshot."""
    yield from neutral(snap)
    yield from dcgm(snap)
    yield from npu(snap)
