"""accelpool on Ray: devices and partitions as Ray resources, tasks bound to a target.

>>> import ray, accelpool_ray
>>> ray.init(resources=accelpool_ray.node_resources())   # {"accelpool/nvidia/mig-1g.5gb": 7.0}
>>> @ray.remote(**accelpool_ray.options(profile="1g.5gb"))
... def infer(x):
...     with accelpool_ray.acquire() as b:        # claims one MIG partition of this node
...         return b.run("model.onnx", {"x": x})  # CUDA_VISIBLE_DEVICES=MIG-... set here

See docs/ray.md.
"""

from __future__ import annotations

from accelpool_ray.binding import DEFAULT_TIMEOUT_S, Binding, acquire, current
from accelpool_ray.resources import (
    NOSET_ENV,
    PREFIX,
    Family,
    Request,
    device_family,
    families,
    node_resources,
    options,
    partition_family,
    resolve,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "NOSET_ENV",
    "PREFIX",
    "Binding",
    "Family",
    "Request",
    "acquire",
    "current",
    "device_family",
    "families",
    "node_resources",
    "options",
    "partition_family",
    "resolve",
]
