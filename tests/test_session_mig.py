"""A session on a simulated MIG partition: what its worker sees and what it asks onnxruntime for.

No GPU needed: the visibility is read inside the worker, and the execution provider
request is inspected rather than run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

import accelpool
from accelpool.session import ProviderFallbackWarning, open_session

HAS_CUDA = "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.fixture
def mig() -> Iterator[accelpool.Partition]:
    inv = accelpool.discover(sim="dgx-a100")
    try:
        status = {s.name: s for s in inv.backends()}["nvidia"]
        assert status.available, f"the simulated NVIDIA backend is unavailable: {status.reason}"
        part = inv.devices("nvidia")[0].create_partition("1g.5gb")
        try:
            yield part
        finally:
            part.destroy()
    finally:
        inv.close()


def _tiny() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def test_the_worker_sees_only_the_mig_partition(
    mig: accelpool.Partition, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # the parent's own choice must not leak in
    native = mig.id.split(":", 1)[1]
    assert re.fullmatch(r"MIG-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", native)
    with open_session(mig, allow_fallback=True) as s:
        assert s.env == {"CUDA_VISIBLE_DEVICES": native}
        # read there, in the worker's own os.environ
        assert s.worker_env(["CUDA_VISIBLE_DEVICES"]) == {"CUDA_VISIBLE_DEVICES": native}
        assert s.worker_env() == {"CUDA_VISIBLE_DEVICES": native}


def test_the_session_asks_for_cuda_with_the_partitions_memory(mig: accelpool.Partition) -> None:
    with open_session(mig, allow_fallback=True) as s:
        name, options = s.providers[0]
        assert name == "CUDAExecutionProvider"
        assert int(options["gpu_mem_limit"]) == mig.memory_bytes
        assert all(isinstance(v, str) for v in options.values())  # as onnxruntime takes them
        if not HAS_CUDA:
            # This build has no CUDA: allowed to fall back, the model runs on the CPU.
            with pytest.warns(ProviderFallbackWarning, match="CUDAExecutionProvider"):
                out = s.run(_tiny(), {"x": np.array([1, -2], np.float32)})
            np.testing.assert_array_equal(out["y"], [-1, 2])


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA")
def test_without_fallback_a_missing_cuda_provider_is_refused(mig: accelpool.Partition) -> None:
    with (
        open_session(mig) as s,
        pytest.raises(accelpool.UnsupportedOperation, match="CUDAExecutionProvider"),
    ):
        s.run(_tiny(), {"x": np.ones(2, np.float32)})


def test_one_holder_per_mig_partition_and_siblings_are_independent(
    mig: accelpool.Partition,
) -> None:
    sibling = mig.device.create_partition("1g.5gb")
    try:
        with open_session(mig, isolate=False):
            with pytest.raises(accelpool.InUse, match=f"{mig.id} is held"):
                open_session(mig, isolate=False)
            with open_session(sibling, isolate=False):
                pass
    finally:
        sibling.destroy()
