"""Cost of ``accelpool ls`` as a whole process against a by-hand listing script.

Each sample is a fresh interpreter; the two commands alternate so machine noise hits
both alike. Prints the median of each, their ratio (accelpool / by hand) and the
issue's bound (issue 15: at most 1.20); exits non-zero when over.

    uv run python benchmarks/bench_ls.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

BOUND = 1.20
ACCELPOOL = [sys.executable, "-m", "accelpool", "ls"]

# Lists the same devices by hand: OpenCL devices with pyopencl, NVIDIA GPUs with pynvml.
BY_HAND = """
import pyopencl as cl
for p in cl.get_platforms():
    for d in p.get_devices():
        print(d.name, d.vendor, d.global_mem_size, d.max_compute_units)
import pynvml
try:
    pynvml.nvmlInit()
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        print(pynvml.nvmlDeviceGetName(h), pynvml.nvmlDeviceGetMemoryInfo(h).total)
except pynvml.NVMLError:
    pass
"""


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    hand = [sys.executable, "-c", BY_HAND]
    with tempfile.TemporaryDirectory() as state:
        env = dict(os.environ, ACCELPOOL_STATE_DIR=state)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("ACCELPOOL_SIM", None)
        for _ in range(2):  # warm bytecode and the OS file cache for both
            _time(ACCELPOOL, env), _time(hand, env)
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(_time(ACCELPOOL, env))
            theirs.append(_time(hand, env))
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    ratio = m_ours / m_theirs
    verdict = "ok" if ratio <= BOUND else "OVER"
    print(f"accelpool ls:              median {m_ours * 1000:7.1f} ms over {args.runs} runs")
    print(f"by hand (pyopencl+pynvml): median {m_theirs * 1000:7.1f} ms over {args.runs} runs")
    print(f"ratio (accelpool / by hand): {ratio:.3f}  (bound {BOUND:.2f}: {verdict})")
    print(f"load average: {os.getloadavg()}")
    return 0 if ratio <= BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
