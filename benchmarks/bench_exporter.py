"""Scrape cost of the Prometheus exporter on a simulated dgx-a100, beside raw pynvml.

Side by side in one run, alternating:

- (a) one HTTP scrape of ``accelpool exporter`` (every family, parsed by nothing:
  the bytes a Prometheus server would fetch), with seven MIG partitions on GPU 0;
- (b) by hand with pynvml over the same simulated NVML: for every GPU its handle,
  memory, utilisation, temperature and power, and for every MIG device its memory
  (what dcgm-exporter's default counters need).

Prints the medians, their ratio, a per-phase breakdown of a scrape, and the issue's
bound (a scrape at most 50 ms median).

    .venv/bin/python benchmarks/bench_exporter.py [--runs 101]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import urllib.request
from typing import Any

BOUND_MS = 50.0


def _by_hand(pynvml: Any) -> int:
    """Read dcgm-exporter's default counters with pynvml; returns the readings taken."""
    n = 0
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        pynvml.nvmlDeviceGetUUID(h)
        pynvml.nvmlDeviceGetMemoryInfo(h)
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlDeviceGetUtilizationRates(h)
        pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
        pynvml.nvmlDeviceGetPowerUsage(h)
        n += 4
        for j in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                mh = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
            except pynvml.NVMLError:
                continue
            pynvml.nvmlDeviceGetMemoryInfo(mh)
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=101)
    args = ap.parse_args()
    os.environ["ACCELPOOL_STATE_DIR"] = tempfile.mkdtemp(prefix="bench-exporter-")

    import pynvml
    from accelpool_exporter import AccelpoolCollector, serve

    import accelpool

    inv = accelpool.discover(sim="dgx-a100", backends=["nvidia"])
    gpu = inv.device("nvidia:0")
    for _ in range(7):
        gpu.create_partition("1g.5gb")
    server = serve(AccelpoolCollector(inv), port=0)
    # (b) gets the simulated NVML installed beneath pynvml once, as a script that calls
    # nvmlInit() once would have the real library.
    backend = inv.backend("nvidia")
    backend._install(backend._lib)  # type: ignore[attr-defined]

    def scrape() -> int:
        with urllib.request.urlopen(server.url, timeout=10) as r:
            return len(r.read())

    size = scrape()
    readings = _by_hand(pynvml)
    a, b = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        scrape()
        t1 = time.perf_counter()
        _by_hand(pynvml)
        t2 = time.perf_counter()
        a.append(t1 - t0)
        b.append(t2 - t1)
    server.shutdown()
    # Where a scrape's time goes: the one pass of readings, then the text exposition of
    # its families (the rest of (a) is HTTP), each timed on its own.
    from accelpool_exporter.readings import take_snapshot
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(AccelpoolCollector(inv, interval=3600))  # families of a cached pass
    snap_t, text_t = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        take_snapshot(inv)
        t1 = time.perf_counter()
        generate_latest(registry)
        t2 = time.perf_counter()
        snap_t.append(t1 - t0)
        text_t.append(t2 - t1)
    ma, mb = statistics.median(a) * 1e3, statistics.median(b) * 1e3
    ms, mt = statistics.median(snap_t) * 1e3, statistics.median(text_t) * 1e3
    load = os.getloadavg()[0]
    print(f"load average (1 min): {load:.2f}; {args.runs} runs, alternating")
    print(f"(a) exporter scrape, 8 GPUs + 7 MIG, {size} bytes: median {ma:.2f} ms")
    print(f"(b) pynvml by hand, {readings} readings:            median {mb:.2f} ms")
    print(f"ratio a/b: {ma / mb:.2f}x (HTTP, all families, profiles and claims on top)")
    print(
        f"phases: readings pass {ms:.2f} ms, families to text {mt:.2f} ms, "
        f"HTTP and the rest {max(ma - ms - mt, 0.0):.2f} ms"
    )
    verdict = "holds" if ma <= BOUND_MS else "MISSED"
    print(f"bound: scrape median <= {BOUND_MS:.0f} ms: {ma:.2f} ms, {verdict}")


if __name__ == "__main__":
    main()
