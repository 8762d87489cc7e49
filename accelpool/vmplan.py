"""``accelpool vm plan``: how many VMs of each flavour this host can hold now.

A flavours file (TOML) lists ``[[flavour]]`` entries with ``name`` and either
``gpus = N`` (whole devices passed through) or ``vgpu = "PROFILE"`` and ``count = N``
(vGPU instances per VM). Flavours are planned in file order, each taking what is left;
a device is free for passthrough when it has no partitions and no claim, and a vGPU
profile's room on a device is what its profile still allows (``max_count`` less the
instances there), as ``partition create`` counts it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from accelpool.errors import InvalidRequest


def load(path: str) -> list[dict[str, Any]]:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InvalidRequest(f"cannot read flavours file {path}: {e}") from None
    fl = data.get("flavour")
    if not isinstance(fl, list) or not fl:
        raise InvalidRequest(f"{path} has no [[flavour]] entries: add name and gpus or vgpu")
    return fl


def plan(inv: Any, flavours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from accelpool import claims

    free = [d for d in inv.devices() if not d.partitions() and not claims.blockers(d)]
    room: dict[tuple[str, str], int] = {}
    out = []
    for f in flavours:
        name = f.get("name", "?")
        if "gpus" in f:
            n = int(f["gpus"])
            vms = len(free) // n if n > 0 else 0
            used, free = free[: vms * n], free[vms * n :]
            out.append({"flavour": name, "vms": vms, "devices": [d.id for d in used]})
            continue
        prof, per = str(f.get("vgpu", "")), int(f.get("count", 1))
        total, devs = 0, []
        for d in inv.devices():
            try:
                p = d.profile(prof)
            except Exception:
                continue
            k = (d.id, prof)
            have = sum(1 for x in d.partitions() if x.profile == prof)
            if d.partitions() and any(x.profile != prof for x in d.partitions()):
                continue
            room.setdefault(k, p.max_count - have)
            if room[k] <= 0 or (not d.partitions() and d not in free):
                continue
            total += room[k]
            devs.append(d.id)
            room[k] = 0
            if d in free:
                free.remove(d)
        out.append({"flavour": name, "vms": total // per if per > 0 else 0, "devices": devs})
    return out
