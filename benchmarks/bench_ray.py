"""Per-call medians: accelpool isolated session vs a plain Ray actor vs an accelpool_ray actor.

Run: ``uv run python benchmarks/bench_ray.py`` (starts a local Ray of 2 CPUs on a
simulated dgx-a100 with one 1g.5gb partition).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np
from onnx import TensorProto, helper

# Both are read when Ray is imported: no working-tree runtime_env under `uv run`.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["ACCELPOOL_SIM"] = "dgx-a100"
os.environ.setdefault("ACCELPOOL_STATE_DIR", tempfile.mkdtemp(prefix="accelpool-bench-"))

import accelpool_ray
import ray

import accelpool
from accelpool.session import open_session

N = 30
#: issue 12: accelpool's isolated session must not be slower than the Ray actor call.
BOUND = 1.00


def model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@ray.remote(num_cpus=0)
class Plain:
    def __init__(self, data: bytes) -> None:
        import onnxruntime

        self.s = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> Any:
        return self.s.run(None, {"x": x})[0]


@ray.remote(num_cpus=0)
class Bound:
    def __init__(self, data: bytes) -> None:
        self.b = accelpool_ray.acquire("1g.5gb", allow_fallback=True).open()
        self.m = self.b.session.load(data)

    def run(self, x: np.ndarray) -> Any:
        return self.b.run(self.m, {"x": x})["y"]


def median_ms(fn: Any, x: np.ndarray) -> float:
    fn(x)
    times = []
    for _ in range(N):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    data = model()
    with accelpool.discover() as inv:
        part = inv.device("nvidia:0").create_partition("1g.5gb")
        resources = accelpool_ray.node_resources(inv)
        ray.init(num_cpus=2, resources=resources, include_dashboard=False, log_to_driver=False)
        plain = Plain.remote(data)
        bound = Bound.options(**accelpool_ray.options("1g.5gb", num_cpus=0)).remote(data)
        inputs = {
            "4 MiB": np.ones(1 << 20, dtype=np.float32),
            "small": np.ones(16, dtype=np.float32),
        }
        results = {}
        for label, x in inputs.items():
            results[label] = {
                "ray plain actor": median_ms(lambda v: ray.get(plain.run.remote(v)), x),
                "ray accelpool actor": median_ms(lambda v: ray.get(bound.run.remote(v)), x),
            }
        ray.kill(bound)
        ray.shutdown()
        with open_session(part, allow_fallback=True) as s:
            loaded = s.load(data)
            for label, x in inputs.items():
                results[label]["accelpool isolated"] = median_ms(
                    lambda v: s.run(loaded, {"x": v}), x
                )
    worst = 0.0
    for label, r in results.items():
        iso, plain_ms, bound_ms = (
            r["accelpool isolated"],
            r["ray plain actor"],
            r["ray accelpool actor"],
        )
        ratio = iso / plain_ms
        worst = max(worst, ratio)
        print(
            f"{label:>6}: accelpool isolated {iso:.3f} ms, Ray plain actor {plain_ms:.3f} ms, "
            f"Ray accelpool_ray actor {bound_ms:.3f} ms; "
            f"isolated/plain-actor {ratio:.2f}x (bound {BOUND:.2f}x: "
            f"{'ok' if ratio <= BOUND else 'OVER'}), "
            f"bound/plain-actor {bound_ms / plain_ms:.2f}x"
        )
    print(
        f"accelpool isolated session vs Ray actor call: worst {worst:.2f}x, bound {BOUND:.2f}x: "
        f"{'ok' if worst <= BOUND else 'OVER'}"
    )


if __name__ == "__main__":
    main()
