"""Time two commands as whole processes, interleaved, and report the ratio of medians.

Shared by the benchmarks that compare a complete ``accelpool`` process with a
by-hand script: both run in one fresh state directory with compiled bytecode
(as installed software does), are warmed twice, then alternate run by run so a
change in the machine's load hits both alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time


def _time(cmd: list[str], env: dict[str, str], check: bool) -> float:
    start = time.perf_counter()
    err = None if check else subprocess.DEVNULL
    subprocess.run(cmd, check=check, env=env, stdout=subprocess.DEVNULL, stderr=err)
    return time.perf_counter() - start


def medians(
    ours: list[str], theirs: list[str], runs: int, *, check: bool = True
) -> tuple[float, float]:
    """Median seconds of ``ours`` and of ``theirs`` over ``runs`` interleaved runs.

    ``check=False`` times commands whatever their exit status, their stderr dropped.
    """
    with tempfile.TemporaryDirectory() as state, tempfile.TemporaryDirectory() as pyc:
        # A shell that sets PYTHONDONTWRITEBYTECODE would otherwise recompile every
        # module on every run, on both sides.
        env = dict(os.environ, ACCELPOOL_STATE_DIR=state, PYTHONPYCACHEPREFIX=pyc)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("ACCELPOOL_SIM", None)
        for _ in range(2):  # compile and cache bytecode, warm the OS file cache, for both
            _time(ours, env, check), _time(theirs, env, check)
        a, b = [], []
        for _ in range(runs):
            a.append(_time(ours, env, check))
            b.append(_time(theirs, env, check))
    return statistics.median(a), statistics.median(b)


def verdict(name: str, ratio: float, bound: float) -> str:
    """The ratio line every benchmark prints: value, bound and whether it holds."""
    holds = "ok" if ratio <= bound else "OVER"
    return f"ratio ({name}): {ratio:.3f}  (bound {bound:.2f}: {holds})"
