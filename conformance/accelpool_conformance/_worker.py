"""Entry point of a conformance worker process (see :mod:`accelpool_conformance.workers`)."""

from __future__ import annotations

import base64
import json
import pickle
import sys
from typing import Any

from accelpool.errors import AccelPoolError, InsufficientCapacity
from accelpool.spi import Backend
from accelpool.types import DeviceInfo, PartitionInfo

TAG = "ACCELPOOL-CONFORMANCE "


def _say(doc: dict[str, Any]) -> None:
    sys.stdout.write(TAG + json.dumps(doc) + "\n")
    sys.stdout.flush()


def _part(p: PartitionInfo) -> dict[str, Any]:
    return {
        "id": p.native_id,
        "device": p.device_native_id,
        "profile": p.profile,
        "kind": p.kind,
        "memory_bytes": p.memory_bytes,
        "compute_units": p.compute_units,
        "placement": [p.placement.start, p.placement.size] if p.placement else None,
        "scope": p.scope,
    }


def _device(backend: Backend, native_id: str) -> DeviceInfo:
    for d in backend.devices():
        if d.native_id == native_id:
            return d
    raise LookupError(f"device {native_id} is not listed in the worker")


def _do(backend: Backend, job: dict[str, Any]) -> Any:
    action = job["action"]
    if action == "devices":
        return [[d.native_id, d.index] for d in backend.devices()]
    device = _device(backend, job["device"])
    if action == "partitions":
        return [_part(p) for p in backend.partitions(device)]
    if action == "create":
        created, errors = [], []
        for _ in range(int(job["count"])):
            try:
                created.append(_part(backend.create_partition(device, job["profile"], None)))
            except InsufficientCapacity as e:
                errors.append({"type": type(e).__name__, "message": str(e)})
                break
            except AccelPoolError as e:
                errors.append({"type": type(e).__name__, "message": str(e)})
        return {"created": created, "errors": errors}
    if action == "destroy":
        for p in backend.partitions(device):
            if p.native_id == job["partition"]:
                backend.destroy_partition(p)
                return True
        return False
    raise ValueError(f"unknown worker action {action!r}")


def main() -> int:
    spec, job = pickle.loads(base64.b64decode(sys.stdin.readline()))
    try:
        inventory = spec.inventory()
        backend = inventory.backend(spec.backend)
    except Exception as e:
        _say({"ready": False, "error": f"{type(e).__name__}: {e}"})
        return 1
    _say({"ready": True})
    if sys.stdin.readline().strip() != "go":
        return 1
    try:
        result = _do(backend, job)
    except AccelPoolError as e:
        _say({"result": {"error": {"type": type(e).__name__, "message": str(e)}}})
    except Exception as e:
        _say({"escaped": f"{job['action']} raised {type(e).__module__}.{type(e).__name__}: {e}"})
    else:
        _say({"result": result})
    finally:
        inventory.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
