"""accelpool.pool: placement on a small fleet (a few dozen hosts, a few hundred tasks)."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from accelpool.errors import InvalidRequest
from accelpool.pool import A100_40GB, POLICIES, Demand, Host, PoolDevice, WorkloadMix, place
from accelpool.pool.trace import inflate

ROOT = Path(__file__).resolve().parents[1]


def _fleet(n: int = 24, seed: int = 1) -> list[Host]:
    rng = np.random.default_rng(seed)
    hosts = []
    for i in range(n):
        model, gpus = [("T4", 2), ("V100", 4), ("A100", 8)][i % 3]
        hosts.append(
            Host(f"h{i:02d}", int(rng.choice([32000, 64000, 96000])), 262144,
                 (PoolDevice(model),) * gpus)
        )
    return hosts


def _tasks(n: int = 300, seed: int = 2) -> list[Demand]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = rng.random()
        cpu = int(rng.choice([2000, 4000, 8000, 16000]))
        mem = int(rng.choice([4096, 16384, 65536]))
        if kind < 0.1:
            out.append(Demand(cpu, mem, name=f"t{i}"))
        elif kind < 0.7:
            out.append(Demand(cpu, mem, 1, int(rng.choice([100, 250, 460, 500, 800])),
                              name=f"t{i}"))
        else:
            models = ("V100",) if rng.random() < 0.2 else ()
            out.append(Demand(cpu, mem, int(rng.choice([1, 2, 4, 8])), 1000, models,
                              f"t{i}"))
    return out


def _arrivals(hosts: list[Host], seed: int = 3) -> list[Demand]:
    cap = sum(len(h.devices) for h in hosts) * 1000
    return inflate(_tasks(), cap, 1.3, seed)


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("mode", ["fractional", "mig"])
def test_constraints_are_honoured(policy: str, mode: str) -> None:
    hosts = _fleet()
    demands = _arrivals(hosts)
    res = place(demands, hosts, policy, mode=mode, seed=7)
    assert len(res.assignments) + len(res.failed) == len(demands)
    assert res.failed, "130% of capacity cannot all fit"
    cpu: dict[int, int] = defaultdict(int)
    mem: dict[int, int] = defaultdict(int)
    share: dict[tuple[int, int], int] = defaultdict(int)
    for a in res.assignments:
        d, h = demands[a.demand], hosts[a.host]
        cpu[a.host] += d.cpu_milli
        mem[a.host] += d.memory_mib
        assert len(a.devices) == d.gpus == len(set(a.devices))
        for g in a.devices:
            assert not d.models or h.devices[g].model in d.models
            share[(a.host, g)] += d.gpu_milli if mode == "fractional" else 0
            if d.gpus > 1 or not d.is_share:
                share[(a.host, g)] += 10_000  # a whole device is taken by one task only
    for i, h in enumerate(hosts):
        assert cpu[i] <= h.cpu_milli and mem[i] <= h.memory_mib
        assert res.hosts[i].cpu_milli == h.cpu_milli - cpu[i]
    for used in share.values():
        assert used <= 1000 or used == 10_000 + (1000 if mode == "fractional" else 0)
    if mode == "mig":
        for h in res.hosts:
            for dev in h.devices:
                # Raises on overlapping instances or a start the profile does not allow.
                A100_40GB.state_of([(A100_40GB.index(m.profile), m.start) for m in dev.mig])
    assert 0.0 < res.unallocated_pct < 100.0


def test_multi_gpu_tasks_stay_on_one_host() -> None:
    split = [Host(f"h{i}", 64000, 65536, (PoolDevice("T4"),) * 2) for i in range(2)]
    assert place([Demand(1000, 1024, gpus=4)], split, "first-fit").failed == [0]
    hosts = [*split, Host("big", 64000, 65536, (PoolDevice("T4"),) * 4)]
    res = place([Demand(1000, 1024, gpus=4)], hosts, "fgd")
    assert res.assignments[0].host_name == "big"
    assert res.assignments[0].devices == (0, 1, 2, 3)


def _stranding_case() -> tuple[list[Demand], list[Host]]:
    # A CPU-only task first: on the small host it would leave that host's GPU without
    # CPU for any GPU task; the fragmentation-aware policies avoid that.
    hosts = [
        Host("small", 8000, 65536, (PoolDevice("T4"),)),
        Host("large", 64000, 65536, (PoolDevice("T4"),)),
    ]
    demands = [Demand(8000, 1024), Demand(4000, 1024, 1, 1000), Demand(4000, 1024, 1, 1000)]
    return demands, hosts


def test_policy_ordering_on_a_crafted_case() -> None:
    demands, hosts = _stranding_case()
    got = {p: len(place(demands, hosts, p).assignments) for p in POLICIES}
    assert got["best-fit"] == got["first-fit"] == 2
    assert got["fgd"] == got["accelpool"] == 3


def test_fgd_prefers_the_device_that_keeps_typical_tasks_placeable() -> None:
    hosts = [Host("h", 64000, 65536, (PoolDevice("T4", 700), PoolDevice("T4", 1000)))]
    mix = WorkloadMix.from_demands([Demand(1000, 0, 1, 600)] * 9 + [Demand(1000, 0, 1, 300)])
    # Best fit puts the 300 on the 700 device, leaving 400 that no 600 task can use;
    # FGD puts it on the untouched device, which keeps room for a 600 on each.
    demands = [Demand(1000, 0, 1, 300), Demand(1000, 0, 1, 600), Demand(1000, 0, 1, 600)]
    bf = place(demands, hosts, "best-fit", mix=mix)
    fgd = place(demands, hosts, "fgd", mix=mix)
    assert bf.assignments[0].devices == (0,) and fgd.assignments[0].devices == (1,)
    assert len(fgd.assignments) == 3 and len(bf.assignments) == 2


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_deterministic_per_seed(policy: str) -> None:
    hosts = _fleet(12)
    demands = _arrivals(hosts, seed=5)
    a = place(demands, hosts, policy, seed=11)
    b = place(demands, hosts, policy, seed=11)
    assert a.assignments == b.assignments and a.failed == b.failed
    assert inflate(_tasks(), 30000, 1.3, 9) == inflate(_tasks(), 30000, 1.3, 9)


def test_random_policy_follows_the_seed() -> None:
    hosts = _fleet(12)
    demands = _arrivals(hosts, seed=5)
    runs = {tuple(place(demands, hosts, "random", seed=s).failed) for s in range(4)}
    assert len(runs) > 1


@pytest.mark.parametrize(
    ("milli", "profile"),
    [(100, "1g.5gb"), (130, "1g.10gb"), (250, "2g.10gb"), (300, "3g.20gb"),
     (460, "4g.20gb"), (600, "7g.40gb"), (1000, "7g.40gb")],
)
def test_mig_profile_is_the_smallest_that_covers_the_share(milli: int, profile: str) -> None:
    hosts = [Host("h", 64000, 65536, (PoolDevice("A100-40GB"),))]
    res = place([Demand(1000, 0, 1, milli)], hosts, "first-fit", mode="mig")
    assert res.assignments[0].profile == profile


def test_mig_placement_keeps_room_for_larger_profiles() -> None:
    # Seven 1g tasks then a 3g: a policy that scatters the 1g instances blocks the 3g.
    hosts = [Host("h", 64000, 65536, (PoolDevice("A100-40GB"),) * 2)]
    demands = [Demand(100, 0, 1, 100)] * 4 + [Demand(100, 0, 1, 300)] * 3
    mix = WorkloadMix.from_demands(demands)
    for policy in ("fgd", "accelpool"):
        res = place(demands, hosts, policy, mode="mig", mix=mix)
        assert not res.failed, policy


def test_solver_bound_is_above_every_policy() -> None:
    pytest.importorskip("highspy")
    from accelpool.pool.bound import layouts, mig_bound

    assert (0, 0, 0, 0, 0, 1) in layouts(A100_40GB)
    assert (7, 0, 0, 0, 0, 0) in layouts(A100_40GB)
    hosts = _fleet(6)
    demands = _arrivals(hosts, seed=4)[:80]
    b = mig_bound(demands, hosts, time_limit=10)
    for policy in POLICIES:
        res = place(demands, hosts, policy, mode="mig")
        assert res.allocated_units <= b.bound_units + 1e-6
        assert res.unallocated_pct >= b.unallocated_lower_bound_pct - 1e-6


def test_bad_demands_fail_with_one_clear_error() -> None:
    with pytest.raises(InvalidRequest, match="share"):
        Demand(1000, 0, gpus=2, gpu_milli=500)
    with pytest.raises(InvalidRequest, match="policy"):
        place([Demand(1000)], _fleet(3), "nope")
    with pytest.raises(InvalidRequest, match="mode"):
        place([Demand(1000)], _fleet(3), mode="vgpu")


def test_benchmark_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    bench = ROOT / "benchmarks" / "bench_pool_trace.py"
    for argv in (["--policies", "nope"], ["--data", str(tmp_path)]):
        p = subprocess.run([sys.executable, str(bench), *argv], capture_output=True, text=True)
        assert p.returncode == 2
        assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1
