"""Discovery cost of simulated NVIDIA fleets of 8 and 1,024 GPUs.

Prints, per fleet size, the time per GPU of listing GPUs through the NVIDIA backend
(pynvml's real wrappers over the NVML simulator), the time per GPU of listing every
GPU's MIG partitions as ``accelpool ls`` does, the NVML calls made per GPU, and the
time of a whole ``accelpool.discover()`` (which adds a fixed plugin-loading cost).
The issue's bounds (issue 15): the per-GPU times at 1,024 GPUs within 1.5x of those
at 8, and ``accelpool --sim FLEET ls`` of 4,096 GPUs (each with a MIG partition), as a
whole process, under 2 s (best of three).

    .venv/bin/python benchmarks/bench_nvidia_fleet.py [--sizes 8,1024] [--repeat 5] [--big 4096]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _fleet(folder: Path, count: int) -> str:
    path = folder / f"bench-{count}.toml"
    path.write_text(
        f'name = "bench-{count}"\n[[devices]]\nbackend = "nvidia"\nmodel = "A100-SXM4-40GB"\n'
        f"count = {count}\n[devices.options]\nmig = true\n"
    )
    return str(path)


def _backend(spec: str) -> Any:
    from accelpool_nvidia.backend import NvidiaBackend

    from accelpool.inventory import resolve_fleet
    from accelpool.spi import BackendContext, SimContext

    fleet = resolve_fleet(spec)
    assert fleet is not None
    sim = SimContext(
        fleet.name, fleet.for_backend("nvidia"), fleet.state(), fleet.state_root() / "nvidia"
    )
    backend = NvidiaBackend(BackendContext(name="nvidia", sim=sim))
    backend.probe()
    return backend


def measure(spec: str, count: int, repeat: int) -> dict[str, float]:
    import accelpool

    # Give every GPU one MIG partition so the partition walk has something to find
    # (one state transaction for the whole set-up).
    setup = _backend(spec)
    with setup.simulator.batch():
        for d in setup.devices():
            setup.create_partition(d, "3g.20gb")
    setup.close()

    # Every pass starts from a fresh backend (cold caches, as a new process would) and
    # times only the listing. Small fleets take several passes per sample so each
    # sample spans about 1,024 GPUs; the best of the samples is kept, as timeit advises.
    loops = max(1, 1024 // count)
    list_times, part_times, calls = [], [], []
    for _ in range(repeat + 1):  # the first sample warms the interpreter and is dropped
        t_list = t_part = 0.0
        n_calls = 0
        for _ in range(loops):
            backend = _backend(spec)
            sim = backend.simulator
            before = sum(sim.calls.values())
            t0 = time.perf_counter()
            devices = backend.devices()
            t1 = time.perf_counter()
            n_calls += sum(sim.calls.values()) - before
            parts = sum(len(backend.partitions(d)) for d in devices)
            t2 = time.perf_counter()
            assert len(devices) == count and parts == count
            t_list += t1 - t0
            t_part += t2 - t1
            backend.close()
        list_times.append(t_list / count / loops)
        part_times.append(t_part / count / loops)
        calls.append(n_calls / count / loops)
    list_times, part_times = list_times[1:], part_times[1:]
    t0 = time.perf_counter()
    with accelpool.discover(sim=spec, backends=["nvidia"]) as inv:
        assert len(inv.devices()) == count
    whole = time.perf_counter() - t0
    return {
        "list_per_gpu": min(list_times),
        "partitions_per_gpu": min(part_times),
        "calls_per_gpu": statistics.median(calls),
        "discover_total": whole,
    }


SCALING_BOUND = 1.5
BIG_BOUND_S = 2.0


def whole_ls(spec: str, count: int, runs: int = 3) -> float:
    """Best wall time of ``accelpool --sim SPEC ls`` as a fresh process."""
    setup = _backend(spec)
    with setup.simulator.batch():
        for d in setup.devices():
            setup.create_partition(d, "3g.20gb")
    setup.close()
    cmd = [sys.executable, "-m", "accelpool", "--sim", spec, "ls"]
    best = float("inf")
    for _ in range(runs + 1):  # the first run compiles and warms caches
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        best = min(best, time.perf_counter() - t0)
    assert out.count("3g.20gb") == count, "every GPU's partition is listed"
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,1024")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--big", type=int, default=4096, help="GPUs of the whole-ls fleet")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="accelpool-bench-") as tmp:
        os.environ["ACCELPOOL_STATE_DIR"] = str(Path(tmp) / "state")
        os.environ.pop("ACCELPOOL_SIM", None)
        results = {n: measure(_fleet(Path(tmp), n), n, args.repeat) for n in sizes}
        big = whole_ls(_fleet(Path(tmp), args.big), args.big) if args.big else None
    print(
        f"{'GPUs':>6} {'list/GPU':>10} {'partitions/GPU':>15} {'NVML calls/GPU':>15} "
        f"{'discover() total':>17}"
    )
    for n, r in results.items():
        print(
            f"{n:>6} {r['list_per_gpu'] * 1e3:>8.3f}ms {r['partitions_per_gpu'] * 1e3:>13.3f}ms "
            f"{r['calls_per_gpu']:>15.1f} {r['discover_total'] * 1e3:>15.1f}ms"
        )
    small, large = results[min(sizes)], results[max(sizes)]
    ok = True
    for key, label in (("list_per_gpu", "GPU listing"), ("partitions_per_gpu", "partitions")):
        ratio = large[key] / small[key]
        within = ratio <= SCALING_BOUND
        ok &= within
        print(
            f"ratio ({label} per GPU, {max(sizes)} / {min(sizes)} GPUs): {ratio:.3f}  "
            f"(bound {SCALING_BOUND:.2f}: {'ok' if within else 'OVER'})"
        )
    if big is not None:
        fits = big <= BIG_BOUND_S
        ok &= fits
        print(
            f"accelpool ls of {args.big} GPUs (each with a MIG partition), whole process: "
            f"{big:.2f} s  (bound {BIG_BOUND_S:.1f} s: {'ok' if fits else 'OVER'})"
        )
    print(f"load average: {os.getloadavg()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
