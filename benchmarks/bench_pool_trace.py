"""Replay the Alibaba GPU trace as the FGD paper's simulator does, for every policy.

1,213 nodes / 6,212 GPUs; tasks only arrive; the task list is shuffled and resampled
with each seed until GPU requests reach 130% of capacity; each task is placed when it
arrives or fails. Prints, per policy, the unallocated share of GPU capacity at the end
(mean and stdev over the seeds) and the seconds one replay takes.

    uv run python benchmarks/bench_pool_trace.py [--trace default] [--mode fractional|mig]
        [--seeds 5] [--policies fgd,accelpool] [--data DIR] [--json]
    uv run python benchmarks/bench_pool_trace.py --mode mig --bound-hosts 30

``--bound-hosts N`` (MIG mode) replays a subsample of N hosts instead and adds the
exact solver's lower bound on the unallocated share for it (HiGHS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from accelpool.errors import AccelPoolError
from accelpool.pool import POLICIES, WorkloadMix, place
from accelpool.pool.trace import TRACES, inflate, load_hosts, load_tasks, subsample_hosts

TRACE_DIR = Path("shared") / "data" / "alibaba-gpu-v2023"


def default_data() -> Path:
    """$ACCELPOOL_TRACE_DIR, else shared/data/alibaba-gpu-v2023 beside the repository
    (or beside a folder above it, as for a git worktree), else ../shared/data/..."""
    env = os.environ.get("ACCELPOOL_TRACE_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    for up in repo.parents:
        if (up / TRACE_DIR).is_dir():
            return up / TRACE_DIR
    return repo.parent / TRACE_DIR


def run(args: argparse.Namespace) -> dict[str, object]:
    hosts = load_hosts(args.data)
    tasks = load_tasks(args.data, args.trace)
    # FGD's typical tasks come from the original list, as in the simulator.
    mix = WorkloadMix.from_demands(tasks)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    out: dict[str, object] = {"trace": args.trace, "mode": args.mode, "seeds": seeds}
    policies: dict[str, dict[str, object]] = {}
    bounds: list[float] = []
    for name in args.policies:
        pcts, secs = [], []
        for seed in seeds:
            fleet_hosts = hosts
            if args.bound_hosts:
                fleet_hosts = subsample_hosts(hosts, args.bound_hosts, seed)
            cap = sum(len(h.devices) for h in fleet_hosts) * 1000
            arrivals = inflate(tasks, cap, args.ratio, seed)
            t0 = time.perf_counter()
            res = place(arrivals, fleet_hosts, name, mode=args.mode, mix=mix, seed=seed)
            secs.append(time.perf_counter() - t0)
            pcts.append(res.unallocated_pct)
            if args.bound_hosts and len(bounds) < len(seeds):
                from accelpool.pool.bound import mig_bound

                b = mig_bound(arrivals, fleet_hosts, time_limit=args.time_limit)
                bounds.append(b.unallocated_lower_bound_pct)
        policies[name] = {
            "unallocated_pct": round(statistics.mean(pcts), 3),
            "stdev": round(statistics.stdev(pcts), 3) if len(pcts) > 1 else 0.0,
            "seconds": round(statistics.mean(secs), 2),
            "per_seed": [round(p, 3) for p in pcts],
        }
        if not args.json:
            p = policies[name]
            print(f"{name:12s} {p['unallocated_pct']:7.2f}% ± {p['stdev']:.2f}  "
                  f"{p['seconds']:6.1f} s/replay", flush=True)
    out["policies"] = policies
    if args.bound_hosts:
        out["hosts"] = args.bound_hosts
        out["solver_lower_bound_pct"] = round(statistics.mean(bounds), 3)
        out["solver_lower_bound_per_seed"] = [round(b, 3) for b in bounds]
        if not args.json:
            print(f"{'solver bound':12s} {out['solver_lower_bound_pct']:7.2f}%")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with the trace's CSV files (default: $ACCELPOOL_TRACE_DIR "
                        "or ../shared/data/alibaba-gpu-v2023 beside the repository)")
    parser.add_argument("--trace", default="default", choices=sorted(TRACES))
    parser.add_argument("--mode", default="fractional", choices=["fractional", "mig"])
    parser.add_argument("--policies", default=",".join(POLICIES),
                        type=lambda s: [p for p in s.split(",") if p])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=42)
    parser.add_argument("--ratio", type=float, default=1.3)
    parser.add_argument("--bound-hosts", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=120.0,
                        help="seconds the solver may take per subsample")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.data is None:
        args.data = default_data()
    unknown = [p for p in args.policies if p not in POLICIES]
    if unknown:
        print(f"error: unknown policy {unknown[0]!r}: use {', '.join(POLICIES)}", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print("error: --seeds must be at least 1", file=sys.stderr)
        return 2
    if args.bound_hosts and args.mode != "mig":
        print("error: --bound-hosts needs --mode mig", file=sys.stderr)
        return 2
    try:
        out = run(args)
    except AccelPoolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
