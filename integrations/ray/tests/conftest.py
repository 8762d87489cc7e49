"""A real local Ray for accelpool_ray's tests: one cluster per module, a simulated dgx-a100.

The fleet is shared with the Ray workers the way it is on a real node: through the
environment (``ACCELPOOL_SIM``) and the state directory (``ACCELPOOL_STATE_DIR``)
that the raylet, and so every worker, inherits from the test process.

Start-up cost, measured on 2 cores (see docs/ray.md, "Test and start-up cost"): a local
``ray.init`` is about 9 CPU-seconds (GCS, raylet, dashboard head and agent, runtime-env
agent, autoscaler monitor, log monitor), and each Ray worker process about 1.1 more;
accelpool's own share in a worker (import, discover, claim, a session) is about 0.3.
So the cluster is started once per module, as lean as Ray allows, and workers are kept
between the module's tests instead of being killed after a second of idleness.
"""

from __future__ import annotations

import os

# Read by Ray when it is imported, so set before any test module imports it: under
# ``uv run`` Ray would otherwise package the whole working tree as a runtime_env and
# start every worker through ``uv run`` (seconds per worker).
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
from collections.abc import Iterator
from pathlib import Path

import accelpool_ray
import numpy as np
import pytest
from onnx import TensorProto, helper

import accelpool

PROFILE = "1g.5gb"
FAMILY = "accelpool/nvidia/mig-1g.5gb"
WEIGHTS = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)
#: Ray's own GPUs on the test node: lets a test show what RAY_EXPERIMENTAL_NOSET_* changes.
RAY_GPUS = 1
#: Settings of ``ray.init`` that keep a test cluster cheap (all public ``ray.init``
#: arguments but ``_system_config``, whose two keys have been stable since Ray 1.x).
RAY_INIT_OPTIONS: dict[str, object] = {
    "num_cpus": 2,
    "num_gpus": RAY_GPUS,
    "include_dashboard": False,
    "log_to_driver": False,
    "configure_logging": False,
    "object_store_memory": 80 * 1024**2,  # Ray's floor is 75 MiB; the tests pass bytes only
    "_system_config": {
        # Keep up to 8 idle workers (default: num_cpus) so a module's later tests reuse
        # the workers an earlier one started, each already holding accelpool imported.
        "num_workers_soft_limit": 8,
        # Start workers when tasks need them, not two on the first connection: the
        # start-up that every test of the module shares stays as short as it can.
        "prestart_worker_first_driver": False,
    },
}


def tiny_model() -> bytes:
    """y = x * WEIGHTS, for x of shape (N, 4)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], WEIGHTS.tolist())
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


class Cluster:
    """What a test gets: the fleet's state directory, its partitions, a model."""

    def __init__(self, state: Path, partitions: list[str]) -> None:
        self.state = state
        self.partitions = partitions  # target ids of the seven 1g.5gb partitions
        self.model = tiny_model()
        self.weights = WEIGHTS


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A local Ray of 2 CPUs whose node has seven 1g.5gb partitions on nvidia:0."""
    ray = pytest.importorskip("ray")
    state = tmp_path_factory.mktemp("ray-accelpool-state")
    names = ("ACCELPOOL_STATE_DIR", "ACCELPOOL_SIM")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(
        ACCELPOOL_STATE_DIR=str(state),
        ACCELPOOL_SIM="dgx-a100",
    )
    try:
        with accelpool.discover() as inv:
            gpu = inv.device("nvidia:0")
            parts = [gpu.create_partition(PROFILE).id for _ in range(7)]
            resources = accelpool_ray.node_resources(inv)
        ray.init(resources=resources, **RAY_INIT_OPTIONS)  # type: ignore[arg-type]
        try:
            yield Cluster(state, parts)
        finally:
            ray.shutdown()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def on_cluster(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """The cluster, with this test's environment pointing at its fleet.

    The root conftest gives each test a state directory of its own; these tests share
    the cluster's, as every process on a node would.
    """
    monkeypatch.setenv("ACCELPOOL_STATE_DIR", str(cluster.state))
    monkeypatch.setenv("ACCELPOOL_SIM", "dgx-a100")
    return cluster
