"""Cost of ``accelpool ls`` as a whole process against a by-hand listing script.

Each sample is a fresh interpreter; the two commands alternate so machine noise hits
both alike. Prints the median of each, their ratio (accelpool / by hand) and the
issue's bound (issue 15: at most 1.20); exits non-zero when over.

    uv run python benchmarks/bench_ls.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import sys

from sidebyside import medians, verdict

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    m_ours, m_theirs = medians(ACCELPOOL, [sys.executable, "-c", BY_HAND], args.runs, check=False)
    ratio = m_ours / m_theirs
    print(f"accelpool ls:              median {m_ours * 1000:7.1f} ms over {args.runs} runs")
    print(f"by hand (pyopencl+pynvml): median {m_theirs * 1000:7.1f} ms over {args.runs} runs")
    print(verdict("accelpool / by hand", ratio, BOUND))
    print(f"load average: {os.getloadavg()}")
    return 0 if ratio <= BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
