"""``place()``: put a list of demands on hosts, in order, under one policy."""

from __future__ import annotations

from collections.abc import Sequence

from accelpool.pool.fleet import Fleet
from accelpool.pool.frag import WorkloadMix
from accelpool.pool.mig import A100_40GB, MigGeometry
from accelpool.pool.model import Assignment, Demand, Host, PlacementResult
from accelpool.pool.policies import Policy, get_policy


def place(
    demands: Sequence[Demand],
    hosts: Sequence[Host] | Fleet,
    policy: str | Policy = "accelpool",
    *,
    mode: str = "fractional",
    mix: WorkloadMix | None = None,
    seed: int = 0,
    geometry: MigGeometry = A100_40GB,
) -> PlacementResult:
    """Place ``demands`` one after another (each placed when it comes, or failed).

    ``hosts`` are the free resources (or a :class:`Fleet` to keep placing on). ``mix``
    is the workload the fleet should stay ready for (FGD and accelpool's policy use it);
    by default it is taken from ``demands``. ``seed`` drives the random policy only.
    The result lists each demand's assignment, the demands that did not fit, and the
    hosts as they stand afterwards.
    """
    fleet = hosts if isinstance(hosts, Fleet) else Fleet(hosts, mode, geometry)
    fleet.rng = __import__("numpy").random.default_rng(seed)
    pol = get_policy(policy)
    pol.bind(fleet, mix if mix is not None else WorkloadMix.from_demands(demands))
    result = PlacementResult(capacity_units=fleet.capacity_units)
    for i, d in enumerate(demands):
        r = fleet.request(d)
        c = pol.choose(r)
        if c is None:
            result.failed.append(i)
            continue
        fleet.apply(c, r)
        pol.placed(c)
        prof = None
        if fleet.mode == "mig" and r.count:
            prof = fleet.geometry.profiles[r.key].name
        result.assignments.append(Assignment(i, c.node, fleet.names[c.node], c.gpus, prof, c.start))
    result.allocated_units = fleet.allocated_units()
    result.hosts = fleet.snapshot()
    return result
