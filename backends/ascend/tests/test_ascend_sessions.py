"""Visibility, CANN placement and sessions on simulated Ascend devices and vNPUs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

import accelpool
from accelpool.session import ProviderFallbackWarning, open_session

GIB = 1 << 30
HAS_CANN = "CANNExecutionProvider" in onnxruntime.get_available_providers()


def _negate_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "neg", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_whole_devices_are_made_visible_by_logical_id(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    inv = discover("atlas-800-910b")
    assert inv.device("ascend:3").visibility_env() == {"ASCEND_RT_VISIBLE_DEVICES": "3"}
    backend = inv.backend("ascend")
    devs = [inv.device("ascend:5").info, inv.device("ascend:1").info]
    # CANN wants logical ids in ascending order
    assert backend.visibility_env(devs) == {"ASCEND_RT_VISIBLE_DEVICES": "1,5"}


def test_a_vnpu_is_made_visible_through_the_container_runtime(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    part = discover("atlas-800-910b").device("ascend:2").create_partition("vir05_1c_16g")
    vnpu = str(part.attributes["huawei.com/vnpuID"])
    assert part.visibility_env() == {
        "ASCEND_VISIBLE_DEVICES": vnpu,
        "ASCEND_RUNTIME_OPTIONS": "VIRTUAL",
        "ASCEND_RT_VISIBLE_DEVICES": "0",
    }


def test_multi_target_requests_take_whole_devices_only(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    inv = discover("atlas-800-910b")
    backend = inv.backend("ascend")
    dev = inv.device("ascend:0")
    part = dev.create_partition("vir05_1c_16g")
    other = inv.device("ascend:1").create_partition("vir05_1c_16g")
    with pytest.raises(accelpool.InvalidRequest, match="whole devices"):
        backend.visibility_env([part.info, inv.device("ascend:1").info])
    with pytest.raises(accelpool.InvalidRequest, match="whole devices"):
        backend.visibility_env([part.info, other.info])
    with pytest.raises(accelpool.InvalidRequest, match="twice"):
        backend.visibility_env([dev.info, dev.info])
    with pytest.raises(accelpool.InvalidRequest):
        backend.visibility_env([])


def test_a_destroyed_vnpu_has_no_visibility_or_placement(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    part = discover("atlas-800-910b").device("ascend:0").create_partition("vir05_1c_16g")
    part.destroy()
    with pytest.raises(accelpool.NotFound):
        part.visibility_env()
    with pytest.raises(accelpool.NotFound):
        part.onnx_placement()


def test_cann_provider_is_limited_to_the_targets_memory(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    dev = discover("atlas-800-910b").device("ascend:0")
    part = dev.create_partition("vir10_3c_32g")
    cann, cpu = part.onnx_placement().providers
    assert cann.name == "CANNExecutionProvider"
    assert dict(cann.options) == {"device_id": 0, "npu_mem_limit": 32 * GIB}
    assert cpu.name == "CPUExecutionProvider"
    whole = dev.onnx_placement().providers[0]
    assert dict(whole.options) == {"device_id": 0, "npu_mem_limit": 64 * GIB}


def test_a_session_on_a_vnpu_exposes_its_env_and_asks_for_cann(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    part = discover("atlas-800-910b").device("ascend:4").create_partition("vir05_1c_16g")
    with open_session(part, allow_fallback=True) as s:
        assert s.env["ASCEND_RT_VISIBLE_DEVICES"] == "0"
        assert s.env["ASCEND_VISIBLE_DEVICES"] == str(part.attributes["huawei.com/vnpuID"])
        # the worker process really runs with it
        assert s.worker_env(["ASCEND_RT_VISIBLE_DEVICES"]) == {"ASCEND_RT_VISIBLE_DEVICES": "0"}
        name, options = s.providers[0]
        assert name == "CANNExecutionProvider"
        assert int(options["npu_mem_limit"]) == part.memory_bytes == 16 * GIB
        assert options["device_id"] == "0"
        if not HAS_CANN:
            with pytest.warns(ProviderFallbackWarning, match="CANNExecutionProvider"):
                out = s.run(_negate_model(), {"x": np.array([1, -2, 3], np.float32)})
            np.testing.assert_array_equal(out["y"], [-1, 2, -3])


@pytest.mark.skipif(HAS_CANN, reason="this onnxruntime has the CANN provider")
def test_without_fallback_a_missing_cann_provider_is_refused(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    dev = discover("atlas-800-910b").device("ascend:0")
    with (
        open_session(dev, isolate=False) as s,
        pytest.raises(accelpool.UnsupportedOperation, match="CANNExecutionProvider"),
    ):
        s.run(_negate_model(), {"x": np.ones(3, np.float32)})
