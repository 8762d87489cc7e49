"""accelpool.pool: place workloads on a fleet of hosts, whole devices, shares or MIG.

>>> from accelpool.pool import Host, PoolDevice, Demand, place
>>> hosts = [Host("h0", 64000, 262144, (PoolDevice("A100-40GB"),) * 2)]
>>> res = place([Demand(8000, 16384, gpus=1, gpu_milli=500)], hosts, "accelpool")
>>> res.assignments[0].host_name, res.assignments[0].devices
('h0', (0,))

Pure data in, pure data out: nothing here talks to a backend. See docs/pool.md.
"""

from accelpool.pool.fleet import Fleet
from accelpool.pool.frag import FragModel, WorkloadMix
from accelpool.pool.mig import A100_40GB, MigGeometry, MigProfile
from accelpool.pool.model import (
    Assignment,
    Demand,
    Host,
    MigInstance,
    PlacementResult,
    PoolDevice,
)
from accelpool.pool.place import place
from accelpool.pool.policies import POLICIES, Policy, get_policy

__all__ = [
    "A100_40GB",
    "POLICIES",
    "Assignment",
    "Demand",
    "Fleet",
    "FragModel",
    "Host",
    "MigGeometry",
    "MigInstance",
    "MigProfile",
    "PlacementResult",
    "Policy",
    "PoolDevice",
    "WorkloadMix",
    "get_policy",
    "place",
]
