"""accelpool.onnx_backend as an ONNX backend: device strings, prepare/run, run_node."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from onnx.backend.base import Backend

import accelpool
from accelpool import onnx_backend
from accelpool.onnx_backend import AccelPoolBackend, AccelPoolBackendRep
from accelpool.session import ClaimStore
from accelpool.testing import toy_inventory


def _add_mul() -> onnx.ModelProto:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, [2])
    p = helper.make_tensor_value_info("p", TensorProto.FLOAT, [2])
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Mul", ["a", "b"], ["p"])],
        "g",
        [a, b],
        [s, p],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def backend() -> Iterator[type[AccelPoolBackend]]:
    inv = toy_inventory()
    bound = AccelPoolBackend.using(
        cpu=inv.device("toy:0"), targets={"second": "toy:1"}, inventory=inv
    )
    yield bound
    bound.close()


def test_it_is_an_onnx_backend_and_runs_models(backend: type[AccelPoolBackend]) -> None:
    assert issubclass(backend, Backend)
    a, b = np.array([1, 2], np.float32), np.array([3, 4], np.float32)
    rep = backend.prepare(_add_mul(), "CPU")
    assert isinstance(rep, AccelPoolBackendRep)
    s, p = rep.run([a, b])
    np.testing.assert_array_equal(s, [4, 6])
    np.testing.assert_array_equal(p, [3, 8])
    # a dict, and bytes, work too
    out = backend.run_model(_add_mul().SerializeToString(), {"a": a, "b": b}, "CPU")
    np.testing.assert_array_equal(out[1], [3, 8])
    with pytest.raises(accelpool.InvalidRequest, match="takes 2 inputs"):
        rep.run([a])


def _claimed() -> list[str]:
    return sorted(c.target for c in ClaimStore().claims())


def test_one_session_per_target_claimed_until_close(backend: type[AccelPoolBackend]) -> None:
    reps = [backend.prepare(_add_mul(), d) for d in ("CPU", "CPU:0", "second", "toy:1")]
    assert _claimed() == ["toy:toy-0", "toy:toy-1"]
    assert reps[0].session is reps[1].session is backend.session("toy:0")
    backend.close()
    assert ClaimStore().claims() == []


def test_closing_the_last_rep_releases_the_claim(backend: type[AccelPoolBackend]) -> None:
    one = backend.prepare(_add_mul(), "CPU")
    two = backend.prepare(_add_mul(), "toy:0")
    assert _claimed() == ["toy:toy-0"]
    one.close()
    assert _claimed() == ["toy:toy-0"]  # two still uses the session
    assert two.run([np.ones(2, np.float32)] * 2)[0].tolist() == [2, 2]
    with two:
        pass
    assert _claimed() == []
    assert one.session.closed
    with pytest.raises(accelpool.InvalidRequest, match="prepare it again"):
        one.run([np.ones(2, np.float32)] * 2)
    again = backend.prepare(_add_mul(), "CPU")  # a new session, claimed anew
    assert _claimed() == ["toy:toy-0"] and again.session is not one.session


def test_a_dropped_rep_releases_the_claim(backend: type[AccelPoolBackend]) -> None:
    rep = backend.prepare(_add_mul(), "CPU")
    assert _claimed() == ["toy:toy-0"]
    del rep
    gc.collect()
    assert _claimed() == []
    backend.run_model(_add_mul(), [np.ones(2, np.float32)] * 2, "CPU")
    assert _claimed() == []  # run_model keeps nothing


def test_a_failed_prepare_releases_its_claim(backend: type[AccelPoolBackend]) -> None:
    with pytest.raises(accelpool.InvalidRequest):
        backend.prepare(b"not a model", "CPU")
    assert _claimed() == []
    kept = AccelPoolBackend.using(cpu=toy_inventory().device("toy:0"), keep_sessions=True)
    try:
        with pytest.raises(accelpool.InvalidRequest):
            kept.prepare(b"not a model")
        assert _claimed() == []  # even a class that keeps sessions
    finally:
        kept.close()


def test_keep_sessions_keeps_the_claim_until_close() -> None:
    kept = AccelPoolBackend.using(cpu=toy_inventory().device("toy:0"), keep_sessions=True)
    try:
        first = kept.prepare(_add_mul())
        session = first.session
        del first
        gc.collect()
        assert _claimed() == ["toy:toy-0"]
        assert kept.prepare(_add_mul()).session is session
    finally:
        kept.close()
    assert _claimed() == []


def test_another_class_can_use_a_target_once_run_model_returned() -> None:
    inv = toy_inventory()
    first = AccelPoolBackend.using(inventory=inv)
    pinned = AccelPoolBackend.using(cpu=inv.device("toy:0"))
    try:
        first.run_model(_add_mul(), [np.ones(2, np.float32)] * 2, "CPU")
        with pinned.prepare(_add_mul()) as rep:  # the same target: no InUse
            assert rep.session.target_id == "toy:toy-0"
    finally:
        first.close()
        pinned.close()


def test_device_strings(backend: type[AccelPoolBackend]) -> None:
    assert backend.target("CPU").id == "toy:toy-0"
    assert backend.target("second").id == "toy:toy-1"
    assert backend.target("toy:1").id == "toy:toy-1"
    assert backend.supports_device("CPU")
    assert backend.supports_device("toy:1")
    assert not backend.supports_device("nope:0")
    assert not backend.supports_device("CUDA")  # no target runs on CUDA here
    with pytest.raises(accelpool.NotFound, match="no CUDA target"):
        backend.target("CUDA")
    with pytest.raises(accelpool.InvalidRequest):
        backend.target("CPU:x")


def test_cpu_is_found_by_placement_when_not_pinned() -> None:
    inv = toy_inventory()
    part = inv.device("toy:1").create_partition("2s")
    bound = AccelPoolBackend.using(inventory=inv)
    try:
        # devices first, then partitions, in inventory order
        assert bound.target("CPU").id == "toy:toy-0"
        assert bound.target("CPU:1").id == "toy:toy-1"
        assert bound.target("CPU:2").id == part.id
        with pytest.raises(accelpool.NotFound, match="3 target"):
            bound.target("CPU:3")
    finally:
        bound.close()


def test_bound_classes_do_not_share_sessions() -> None:
    inv = toy_inventory()
    one = AccelPoolBackend.using(cpu=inv.device("toy:0"))
    two = AccelPoolBackend.using(cpu=inv.device("toy:0"))
    try:
        rep = one.prepare(_add_mul())
        with pytest.raises(accelpool.InUse):
            two.prepare(_add_mul())  # one holder per target, whatever the class
        rep.close()
    finally:
        one.close()
        two.close()


def test_isolated_backends_run_in_a_worker() -> None:
    inv = toy_inventory()
    bound = AccelPoolBackend.using(cpu=inv.device("toy:0"), isolate=True)
    try:
        rep = bound.prepare(_add_mul())
        assert rep.session.isolated and rep.session.worker_pid is not None
        np.testing.assert_array_equal(rep.run([np.ones(2, np.float32)] * 2)[0], [2, 2])
    finally:
        bound.close()


def test_run_node(backend: type[AccelPoolBackend]) -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    (y,) = backend.run_node(node, [np.array([-1.0, 2.0], np.float32)])
    np.testing.assert_array_equal(y, [0, 2])
    node = helper.make_node("Concat", ["a", "b"], ["c"], axis=0)
    (c,) = backend.run_node(
        node,
        [np.array([1], np.int64), np.array([2, 3], np.int64)],
        outputs_info=[(np.int64, (3,))],
    )
    np.testing.assert_array_equal(c, [1, 2, 3])
    with pytest.raises(accelpool.InvalidRequest, match="takes 2 inputs"):
        backend.run_node(node, [np.array([1], np.int64)])


def test_the_module_level_api_matches_onnxruntime_backends() -> None:
    for name in ("prepare", "run", "run_model", "run_node", "supports_device", "is_compatible"):
        assert callable(getattr(onnx_backend, name))


def test_a_mig_partition_by_id() -> None:
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("needs a build without CUDA to show the fallback")
    inv = accelpool.discover(sim="dgx-a100")
    part = inv.devices("nvidia")[0].create_partition("1g.5gb")
    strict = AccelPoolBackend.using(inventory=inv)
    lenient = AccelPoolBackend.using(inventory=inv, allow_fallback=True)
    try:
        assert not strict.supports_device(part.id)  # CUDA is not in this onnxruntime
        assert lenient.supports_device(part.id)
        with pytest.raises(accelpool.UnsupportedOperation, match="CUDAExecutionProvider"):
            strict.prepare(_add_mul(), part.id)
        assert ClaimStore().claims() == []  # the failed prepare left no claim
        with pytest.warns(accelpool.session.ProviderFallbackWarning):
            rep = lenient.prepare(_add_mul(), part.id)
        assert rep.session.env == {"CUDA_VISIBLE_DEVICES": part.id.split(":", 1)[1]}
        np.testing.assert_array_equal(rep.run([np.ones(2, np.float32)] * 2)[1], [1, 1])
        assert lenient.target("CUDA").id == part.id  # the only target that asks for CUDA
    finally:
        strict.close()
        lenient.close()
        part.destroy()
        inv.close()
