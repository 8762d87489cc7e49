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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelpool_exporter.collector import AccelpoolCollector, serve
    from accelpool_exporter.readings import Snapshot, take_snapshot

__all__ = ["AccelpoolCollector", "Snapshot", "serve", "take_snapshot"]

# Imported on first use: every `accelpool` command loads this package's CLI entry
# point, and prometheus_client alone costs more than `accelpool ls` itself.
_WHERE = {
    "AccelpoolCollector": "accelpool_exporter.collector",
    "serve": "accelpool_exporter.collector",
    "Snapshot": "accelpool_exporter.readings",
    "take_snapshot": "accelpool_exporter.readings",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
