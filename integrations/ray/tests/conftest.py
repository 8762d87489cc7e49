"""A real local Ray for accelpool_ray's tests: one cluster per module, a simulated dgx-a100.

The fleet is shared with the Ray workers the way it is on a real node: through the
environment (``ACCELPOOL_SIM``) and the state directory (``ACCELPOOL_STATE_DIR``)
that the raylet, and so every worker, inherits from the test process.
"""

from __future__ import annotations

import os
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
    names = ("ACCELPOOL_STATE_DIR", "ACCELPOOL_SIM", "RAY_ENABLE_UV_RUN_RUNTIME_ENV")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(
        ACCELPOOL_STATE_DIR=str(state),
        ACCELPOOL_SIM="dgx-a100",
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",  # workers use this interpreter, not 'uv run'
    )
    try:
        with accelpool.discover() as inv:
            gpu = inv.device("nvidia:0")
            parts = [gpu.create_partition(PROFILE).id for _ in range(7)]
            resources = accelpool_ray.node_resources(inv)
        ray.init(
            num_cpus=2,
            resources=resources,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
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
