"""The Alibaba GPU cluster trace (cluster-trace-gpu-v2023) and its replay.

The replay follows the FGD paper's simulator: the original tasks in a seeded random
order, then tasks resampled from the originals until the GPU requests would pass
``ratio`` times the fleet's GPU capacity ("inflation"); tasks only arrive, and each is
placed when it arrives or fails.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from accelpool.errors import InvalidRequest
from accelpool.pool.model import MILLI, Demand, Host, PoolDevice

NODE_FILE = "openb_node_list_gpu_node.csv"
TRACES = {
    "default": "openb_pod_list_default.csv",
    "gpushare40": "openb_pod_list_gpushare40.csv",
    "gpushare100": "openb_pod_list_gpushare100.csv",
    "multigpu50": "openb_pod_list_multigpu50.csv",
}


def _rows(path: Path, need: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise InvalidRequest(f"trace file {path} not found: pass --data with the trace folder")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = [c for c in need if rows and c not in rows[0]]
    if not rows or missing:
        raise InvalidRequest(f"{path} lacks columns {', '.join(missing) or 'and rows'}")
    return rows


def load_hosts(data: Path) -> list[Host]:
    """The trace's GPU nodes as hosts (every device free)."""
    rows = _rows(Path(data) / NODE_FILE, ("sn", "cpu_milli", "memory_mib", "gpu", "model"))
    return [
        Host(
            r["sn"],
            int(r["cpu_milli"]),
            int(r["memory_mib"]),
            tuple(PoolDevice(r["model"]) for _ in range(int(r["gpu"]))),
        )
        for r in rows
    ]


def load_tasks(data: Path, trace: str = "default") -> list[Demand]:
    """The tasks of one trace file, in the file's (name) order."""
    if trace not in TRACES:
        raise InvalidRequest(f"unknown trace {trace!r}: use one of {', '.join(TRACES)}")
    rows = _rows(Path(data) / TRACES[trace], ("name", "cpu_milli", "memory_mib", "num_gpu"))
    out = []
    for r in rows:
        gpus = int(r["num_gpu"])
        milli = int(r.get("gpu_milli") or MILLI)
        models = tuple((r.get("gpu_spec") or "").split("|")) if gpus else ()
        if gpus and milli <= 0:
            gpus = 0  # the simulator treats a zero share as no GPU at all
        out.append(
            Demand(
                int(r["cpu_milli"]),
                int(r["memory_mib"]),
                gpus,
                min(milli, MILLI) if gpus else 0,
                models,
                r["name"],
            )
        )
    return sorted(out, key=lambda d: d.name)


def inflate(
    tasks: list[Demand], capacity_milli: int, ratio: float = 1.3, seed: int = 42
) -> list[Demand]:
    """Arrivals: the tasks shuffled with ``seed``, then tasks drawn from them until the
    GPU requests would exceed ``ratio`` x capacity (the check compares the running
    total plus one device's share, as the simulator does). When the tasks already ask
    for more (a small fleet), tasks are dropped at random until they do not."""
    rng = np.random.default_rng(seed)
    order = [tasks[i] for i in rng.permutation(len(tasks))]
    total = sum(d.total_milli for d in tasks)
    target = ratio * capacity_milli
    while total > target and order:
        # More requests than the target already (a small fleet): drop tasks at random.
        total -= order.pop(int(rng.integers(len(order)))).total_milli
    while total <= target:
        d = tasks[int(rng.integers(len(tasks)))]
        if total + d.gpu_milli > target:
            break
        total += d.total_milli
        order.append(d)
    return order


def subsample_hosts(hosts: list[Host], n: int, seed: int = 0) -> list[Host]:
    """``n`` hosts drawn with ``seed``, kept in their original order."""
    if not 0 < n <= len(hosts):
        raise InvalidRequest(f"cannot draw {n} hosts from {len(hosts)}: give 1..{len(hosts)}")
    idx = np.sort(np.random.default_rng(seed).choice(len(hosts), n, replace=False))
    return [hosts[int(i)] for i in idx]
