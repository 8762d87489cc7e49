"""Cost of ``import accelpool`` + ``discover()`` against doing the same by hand.

Each sample is a fresh interpreter; the two commands alternate so machine noise hits
both alike. Prints the median of each and their ratio (accelpool / by hand). The
issue's bound (issue 15) is a ratio of at most 1.10.

    uv run python benchmarks/bench_discovery.py [--runs 21]
"""

from __future__ import annotations

import argparse
import os
import sys

from sidebyside import medians, verdict

ACCELPOOL = "import accelpool; inv = accelpool.discover(); inv.devices()"

# The bare minimum that gives the same answer without accelpool: list OpenCL
# platforms and devices with their properties, try NVML, try the vendor libraries.
BY_HAND = """
import ctypes
import pyopencl as cl
devices = []
for p in cl.get_platforms():
    for d in p.get_devices():
        devices.append((d.name, d.vendor, d.global_mem_size, d.max_compute_units, d.version))
import pynvml
try:
    pynvml.nvmlInit()
except pynvml.NVMLError:
    pass
for lib in ("libdcmi.so", "libcndev.so"):
    try:
        ctypes.CDLL(lib)
    except OSError:
        pass
"""


BOUND = 1.10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    py = [sys.executable, "-c"]
    m_ours, m_theirs = medians([*py, ACCELPOOL], [*py, BY_HAND], args.runs)
    print(f"import accelpool + discover(): median {m_ours * 1000:7.1f} ms over {args.runs} runs")
    print(f"by hand (pyopencl+pynvml):    median {m_theirs * 1000:7.1f} ms over {args.runs} runs")
    ratio = m_ours / m_theirs
    print(verdict("accelpool / by hand", ratio, BOUND))
    print(f"overhead: {(m_ours - m_theirs) * 1000:+.1f} ms per process; load: {os.getloadavg()}")
    return 0 if ratio <= BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
