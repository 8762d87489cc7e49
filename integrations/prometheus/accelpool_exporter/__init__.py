"""A Prometheus exporter for every accelpool backend.

>>> import accelpool
>>> from accelpool_exporter import AccelpoolCollector, serve
>>> inv = accelpool.discover(sim="dgx-a100")
>>> server = serve(AccelpoolCollector(inv), port=0)   # http://127.0.0.1:<port>/metrics
>>> server.shutdown()

The series are described in docs/exporter.md: dcgm-exporter's names for NVIDIA,
npu-exporter's for Ascend, and vendor-neutral ``accelpool_*`` families for all.
"""

from __future__ import annotations

from accelpool_exporter.collector import AccelpoolCollector, serve
from accelpool_exporter.readings import Snapshot, take_snapshot

__all__ = ["AccelpoolCollector", "Snapshot", "serve", "take_snapshot"]
