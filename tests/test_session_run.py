"""Sessions running ONNX models: in-process and isolated, sources, errors, failures, leaks."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import accelpool
from accelpool.session import (
    ClaimStore,
    LoadedModel,
    ProviderFallbackWarning,
    Session,
    WorkerDied,
    holder_alive,
    open_session,
)
from accelpool.testing import ToyBackend, inventory_of, toy_backend, toy_inventory
from accelpool.types import DeviceInfo, ExecutionProvider, OnnxPlacement, PartitionInfo


def _model(op: str = "Add", dtype: int = TensorProto.FLOAT, outputs: int = 1) -> onnx.ModelProto:
    """y = x op x (and z = x for a second output)."""
    x = helper.make_tensor_value_info("x", dtype, None)
    nodes = [helper.make_node(op, ["x", "x"], ["y"])]
    outs = [helper.make_tensor_value_info("y", dtype, None)]
    if outputs == 2:
        nodes.append(helper.make_node("Identity", ["x"], ["z"]))
        outs.append(helper.make_tensor_value_info("z", dtype, None))
    graph = helper.make_graph(nodes, "g", [x], outs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _identity(dtype: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", dtype, None)
    y = helper.make_tensor_value_info("y", dtype, None)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _sequence_model() -> onnx.ModelProto:
    """s = [x, x + x], a sequence output (which cannot travel through shared memory)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    s = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Add", ["x", "x"], ["d"]),
        helper.make_node("SequenceConstruct", ["x", "d"], ["s"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [s])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


ADD = _model()


@pytest.fixture(scope="module", params=[False, True], ids=["in-process", "isolated"])
def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Session]:
    """One session per mode for the whole module (a worker start costs half a second).

    Module fixtures run before the per-test state directory is set, so this one sets
    its own: the claim must never land in the user's state directory.
    """
    with pytest.MonkeyPatch.context() as m:
        m.setenv("ACCELPOOL_STATE_DIR", str(tmp_path_factory.mktemp("session-state")))
        s = open_session(toy_inventory().device("toy:0"), isolate=request.param)
    with s:
        yield s


@pytest.fixture(params=[False, True], ids=["in-process", "isolated"])
def fresh_session(request: pytest.FixtureRequest) -> Iterator[Session]:
    with open_session(toy_inventory().device("toy:0"), isolate=request.param) as s:
        yield s


def test_runs_and_exposes_what_it_asks_for(session: Session) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = session.run(ADD, {"x": x})
    assert list(out) == ["y"]
    np.testing.assert_array_equal(out["y"], x + x)
    assert session.env == {"TOY_VISIBLE_DEVICES": "toy-0"}
    assert session.providers == [("CPUExecutionProvider", {})]
    assert session.intra_op_num_threads == 1
    assert session.target_id == "toy:toy-0"
    assert (session.worker_pid is not None) == session.isolated


def test_model_sources_are_equivalent_and_loaded_once(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "add.onnx"
    onnx.save(ADD, path)
    x = np.ones((3,), np.float32)
    for source in (path, str(path), ADD.SerializeToString(), ADD):
        np.testing.assert_array_equal(session.run(source, {"x": x})["y"], 2 * x)
    by_path = session.load(path)
    assert session.load(str(path)) is by_path
    assert session.load(ADD) is session.load(ADD.SerializeToString())
    assert isinstance(by_path, LoadedModel)
    assert by_path.inputs == ["x"] and by_path.outputs == ["y"]
    np.testing.assert_array_equal(session.run(by_path, {"x": x})["y"], 2 * x)


def test_an_edited_model_file_is_reloaded(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model("Add"), path)
    x = np.full((2,), 3, np.float32)
    np.testing.assert_array_equal(session.run(path, {"x": x})["y"], [6, 6])
    onnx.save(_model("Mul"), path)
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    np.testing.assert_array_equal(session.run(path, {"x": x})["y"], [9, 9])


def test_large_inputs_and_outputs_grow_the_shared_memory(session: Session) -> None:
    model = _model(outputs=2)
    for n in (10, 3_000_000, 10, 5_000_000):  # 12 MB and 20 MB: past the first arena
        x = np.random.default_rng(n).random(n, dtype=np.float32)
        out = session.run(model, {"x": x})
        np.testing.assert_array_equal(out["y"], x + x)
        np.testing.assert_array_equal(out["z"], x)
        assert out["z"].flags.owndata or out["z"].base is not None
    # outputs are the caller's own: a later run does not change them
    first = session.run(model, {"x": np.ones(4, np.float32)})["y"]
    session.run(model, {"x": np.zeros(4, np.float32)})
    np.testing.assert_array_equal(first, [2, 2, 2, 2])


def test_output_names_pick_and_order_outputs(session: Session) -> None:
    x = np.arange(3, dtype=np.float32)
    out = session.run(_model(outputs=2), {"x": x}, output_names=["z", "y"])
    assert list(out) == ["z", "y"]
    np.testing.assert_array_equal(out["z"], x)


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        (TensorProto.STRING, np.array(["a", "bc"], dtype=object)),
        (TensorProto.BOOL, np.array([True, False])),
        (TensorProto.FLOAT16, np.array([1.5, -2], dtype=np.float16)),
        (TensorProto.INT64, np.array(7, dtype=np.int64)),  # 0-d
        (TensorProto.DOUBLE, np.zeros((0, 3))),  # empty
        (TensorProto.FLOAT, np.arange(12, dtype=np.float32).reshape(3, 4).T),  # not contiguous
    ],
)
def test_every_kind_of_tensor_crosses(session: Session, dtype: int, value: np.ndarray) -> None:
    out = session.run(_identity(dtype), {"x": value})["y"]
    assert out.dtype == value.dtype and out.shape == value.shape
    np.testing.assert_array_equal(out, value)


def test_sequence_outputs_cross(session: Session) -> None:
    x = np.arange(3, dtype=np.float32)
    seq = session.run(_sequence_model(), {"x": x})["s"]
    assert isinstance(seq, list) and len(seq) == 2
    np.testing.assert_array_equal(seq[1], 2 * x)


def test_bad_requests_are_invalid_request_errors(fresh_session: Session, tmp_path: Path) -> None:
    session = fresh_session
    x = np.ones(2, np.float32)
    with pytest.raises(accelpool.InvalidRequest, match="onnxruntime could not run"):
        session.run(ADD, {"nope": x})
    with pytest.raises(accelpool.InvalidRequest, match="onnxruntime could not load") as info:
        session.run(b"not a model", {"x": x})
    assert info.value.vendor_code  # onnxruntime's own error is kept
    with pytest.raises(accelpool.InvalidRequest, match="cannot read model file"):
        session.run(tmp_path / "missing.onnx", {"x": x})
    with pytest.raises(accelpool.InvalidRequest, match=r"path, bytes or onnx\.ModelProto"):
        session.run(42, {"x": x})
    with pytest.raises(accelpool.InvalidRequest, match="feeds must map"):
        session.run(ADD, [x])  # type: ignore[arg-type]
    # and the session still works afterwards
    np.testing.assert_array_equal(session.run(ADD, {"x": x})["y"], 2 * x)
    session.close()
    with pytest.raises(accelpool.InvalidRequest, match="closed"):
        session.run(ADD, {"x": x})


def test_threads_may_share_a_session(session: Session) -> None:
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(20):
                x = np.full((100,), k * 100 + i, np.float32)
                np.testing.assert_array_equal(session.run(ADD, {"x": x})["y"], x + x)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_the_model_cache_is_bounded_but_handles_stay_usable() -> None:
    with open_session(toy_inventory().device("toy:0"), isolate=True, max_models=2) as s:
        handles = [s.load(_model(op)) for op in ("Add", "Mul", "Sub")]
        x = np.full(2, 3, np.float32)
        # the first was evicted from the worker; running it loads it again
        assert [s.run(h, {"x": x})["y"][0] for h in handles] == [6, 9, 0]


# -- isolation -----------------------------------------------------------------------


def test_the_worker_sees_only_the_targets_visibility(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("ACCELPOOL_TEST_MARKER", "kept")
    target = toy_inventory().device("toy:1")
    with open_session(target, isolate=True) as s:
        assert s.worker_env() == {"TOY_VISIBLE_DEVICES": "toy-1"}
        assert s.worker_env(["ACCELPOOL_TEST_MARKER", "CUDA_VISIBLE_DEVICES"]) == {
            "ACCELPOOL_TEST_MARKER": "kept"
        }
    # this process's own environment is never touched
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert "TOY_VISIBLE_DEVICES" not in os.environ


def test_in_process_sessions_leave_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with open_session(toy_inventory().device("toy:0"), isolate=False) as s:
        assert s.env == {"TOY_VISIBLE_DEVICES": "toy-0"}
        assert s.worker_env() == {"CUDA_VISIBLE_DEVICES": "3"}
        assert s.worker_pid is None


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_a_killed_worker_gives_a_clear_error_keeps_the_claim_and_leaks_nothing() -> None:
    target = toy_inventory().device("toy:0")
    fds, shm = _fds(), _shm()
    x = np.ones(1_000_000, np.float32)
    with open_session(target, isolate=True) as s:
        np.testing.assert_array_equal(s.run(ADD, {"x": x})["y"], 2 * x)
        first = s.worker_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with pytest.raises(WorkerDied, match=r"toy:toy-0 died \(killed by signal SIGKILL\)"):
            s.run(ADD, {"x": x})
        assert not holder_alive(first, None)  # reaped, not a zombie
        # the claim is still ours: nobody else may open the target meanwhile
        holder = ClaimStore().holder(target.id)
        assert holder is not None and holder.pid == os.getpid()
        with pytest.raises(accelpool.InUse):
            open_session(target, isolate=False)
        # the next call starts a fresh worker, which loads the model again
        np.testing.assert_array_equal(s.run(ADD, {"x": x})["y"], 2 * x)
        assert s.worker_pid not in (None, first)
        last = s.worker_pid
    assert last is not None and not holder_alive(last, None)
    assert ClaimStore().claims() == []
    assert _fds() == fds  # sockets and shared-memory fds all closed
    assert _shm() == shm  # nothing named was ever left in /dev/shm


def test_a_worker_that_cannot_start_releases_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.executable", "/nonexistent/python")
    target = toy_inventory().device("toy:0")
    with (
        open_session(target, isolate=True) as s,
        pytest.raises(accelpool.AccelPoolError, match="could not start the session worker"),
    ):
        s.run(ADD, {"x": np.ones(1, np.float32)})
    assert ClaimStore().claims() == []


# -- providers the build lacks ---------------------------------------------------------


class _GpuToy(ToyBackend):
    """A toy backend whose targets ask for CUDA with a memory limit, like a MIG slice."""

    def onnx_placement(self, target: DeviceInfo | PartitionInfo) -> OnnxPlacement:
        return OnnxPlacement(
            (
                ExecutionProvider(
                    "CUDAExecutionProvider",
                    {"device_id": 0, "gpu_mem_limit": target.memory_bytes},
                ),
            )
        )


def _gpu_toy_target() -> Any:
    backend = _GpuToy(toy_backend().context)
    backend._count = 1
    return inventory_of(backend).device("toy:0")


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
def test_a_missing_provider_fails_unless_fallback_is_allowed(isolate: bool) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the fallback cannot be shown here")
    target = _gpu_toy_target()
    x = np.ones(2, np.float32)
    with open_session(target, isolate=isolate) as s:
        assert s.providers == [
            ("CUDAExecutionProvider", {"device_id": "0", "gpu_mem_limit": str(8 << 30)})
        ]
        with pytest.raises(accelpool.UnsupportedOperation, match="CUDAExecutionProvider"):
            s.run(ADD, {"x": x})
    with open_session(target, isolate=isolate, allow_fallback=True) as s:
        with pytest.warns(ProviderFallbackWarning, match="CUDAExecutionProvider"):
            loaded = s.load(ADD)
        assert loaded.providers == ["CPUExecutionProvider"]
        np.testing.assert_array_equal(s.run(loaded, {"x": x})["y"], 2 * x)


def test_cpu_targets_without_a_thread_count_get_one_per_compute_unit() -> None:
    class Unpinned(ToyBackend):
        def onnx_placement(self, target: DeviceInfo | PartitionInfo) -> OnnxPlacement:
            return OnnxPlacement((ExecutionProvider("CPUExecutionProvider"),))

    backend = Unpinned(toy_backend().context)
    backend._count = 1
    device = inventory_of(backend).device("toy:0")
    part = device.create_partition("2s")
    with open_session(part, isolate=False) as s:
        assert s.intra_op_num_threads == part.compute_units == 2


def test_targets_that_cannot_run_onnx_still_give_env_and_claim() -> None:
    class NoOnnx(ToyBackend):
        def onnx_placement(self, target: DeviceInfo | PartitionInfo) -> OnnxPlacement:
            raise accelpool.UnsupportedOperation("toy GPU: onnxruntime has no provider for it")

    backend = NoOnnx(toy_backend().context)
    backend._count = 1
    with open_session(inventory_of(backend).device("toy:0")) as s:
        assert s.env == {"TOY_VISIBLE_DEVICES": "toy-0"} and s.providers == []
        with pytest.raises(accelpool.UnsupportedOperation, match="no provider for it"):
            s.run(ADD, {"x": np.ones(1, np.float32)})


# -- targets by id, OpenCL -------------------------------------------------------------


def test_targets_by_id_resolve_in_the_given_inventory() -> None:
    inv = toy_inventory()
    part = inv.device("toy:1").create_partition("4s")
    with open_session(part.id, inventory=inv, isolate=False) as s:
        assert s.target_id == part.id
    with pytest.raises(accelpool.NotFound):
        open_session("toy:9", inventory=inv)
    with pytest.raises(accelpool.InvalidRequest):
        open_session(3.5)  # type: ignore[arg-type]


def test_opencl_is_offered_only_by_opencl_backends() -> None:
    with (
        open_session(toy_inventory().device("toy:0"), isolate=False) as s,
        pytest.raises(accelpool.UnsupportedOperation, match="not an OpenCL target"),
    ):
        s.opencl()

    made: list[Any] = []

    class ClToy(ToyBackend):
        def context_and_queue(self, target: DeviceInfo | PartitionInfo) -> tuple[str, str]:
            made.append(target.native_id)
            return (f"ctx-{target.native_id}", "queue")

    backend = ClToy(toy_backend().context)
    backend._count = 1
    with open_session(inventory_of(backend).device("toy:0"), isolate=False) as s:
        assert s.opencl() == ("ctx-toy-0", "queue")
        assert s.opencl() == ("ctx-toy-0", "queue")
    assert made == ["toy-0"]  # one context per session


def test_a_real_opencl_cpu_device_gives_a_context_and_runs_models() -> None:
    pytest.importorskip("pyopencl")
    inv = accelpool.discover(backends=["opencl"])
    try:
        devices = inv.devices("opencl")
        cpus = [d for d in devices if d.attributes.get("opencl.khronos.org/deviceType") == "CPU"]
        if not devices:
            pytest.skip("no OpenCL device here")
        target = cpus[0] if cpus else devices[0]
        with open_session(target, isolate=True) as s:
            ctx, queue = s.opencl()
            assert queue.context == ctx
            if s.providers:
                assert s.providers[0][0] == "CPUExecutionProvider"
                assert s.intra_op_num_threads
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    out = s.run(ADD, {"x": np.ones(3, np.float32)})
                np.testing.assert_array_equal(out["y"], [2, 2, 2])
                for name, value in s.env.items():
                    assert s.worker_env([name]) == {name: value}
                assert s.worker_env().items() >= s.env.items()
    finally:
        inv.close()


def test_shared_arrays_cross_without_a_copy_and_survive_a_new_worker() -> None:
    with open_session(toy_inventory().device("toy:0"), isolate=True) as s:
        buf = s.shared_array((4, 1000), np.float32)
        assert buf.shape == (4, 1000) and not buf.any()
        buf[...] = np.arange(4000, dtype=np.float32).reshape(4, 1000)
        np.testing.assert_array_equal(s.run(ADD, {"x": buf})["y"], 2 * buf)
        # a contiguous slice is found in place; changes are seen on the next run
        buf[1] = -1
        np.testing.assert_array_equal(s.run(ADD, {"x": buf[1:3]})["y"], 2 * buf[1:3])
        # a strided view is copied the usual way
        np.testing.assert_array_equal(s.run(ADD, {"x": buf[:, ::2]})["y"], 2 * buf[:, ::2])
        # the arena stays the session's: a fresh worker maps it again
        pid = s.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerDied):
            s.run(ADD, {"x": buf})
        np.testing.assert_array_equal(s.run(ADD, {"x": buf})["y"], 2 * buf)
        with pytest.raises(accelpool.InvalidRequest, match="numbers"):
            s.shared_array(3, object)
    # after close the caller's array is still valid memory
    assert buf[0, 1] == 1.0
    with open_session(toy_inventory().device("toy:0"), isolate=False) as s:
        plain = s.shared_array(3, "int64")
        assert plain.dtype == np.int64 and plain.tolist() == [0, 0, 0]


def test_a_worker_that_died_between_calls_is_reported_once() -> None:
    with open_session(toy_inventory().device("toy:0"), isolate=True) as s:
        x = np.ones(3, np.float32)
        s.run(ADD, {"x": x})
        first = s.worker_pid
        assert first is not None
        os.kill(first, signal.SIGTERM)
        for _ in range(500):  # wait (bounded) until it is gone
            if s.worker_pid is None:
                break
            time.sleep(0.01)
        with pytest.raises(WorkerDied, match=r"killed by signal SIGTERM"):
            s.worker_env()
        np.testing.assert_array_equal(s.run(ADD, {"x": x})["y"], 2 * x)  # a new worker
        assert s.worker_pid not in (None, first)


def test_in_process_runs_recheck_a_model_file_after_the_recheck_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accelpool.session import _session

    path = tmp_path / "m.onnx"
    onnx.save(_model("Add"), path)
    x = np.full((2,), 3, np.float32)
    monkeypatch.setattr(_session, "PATH_RECHECK_S", 3600.0)  # however slow this machine is
    with accelpool.open_session(toy_inventory().device("toy:0"), isolate=False) as s:
        for _ in range(2):  # the second run finds the file by its path alone
            np.testing.assert_array_equal(s.run(str(path), {"x": x})["y"], [6, 6])
        onnx.save(_model("Mul"), path)
        os.utime(path, ns=(1, 1))
        # within the interval the loaded model is trusted; past it, the edit is seen
        np.testing.assert_array_equal(s.run(str(path), {"x": x})["y"], [6, 6])
        monkeypatch.setattr(_session, "PATH_RECHECK_S", 0.0)
        np.testing.assert_array_equal(s.run(str(path), {"x": x})["y"], [9, 9])


def test_one_path_object_run_again_and_again_still_sees_edits_and_evictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accelpool.session import _session

    path, other = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(_model("Add"), path)
    onnx.save(_model("Sub"), other)
    x = np.full((2,), 3, np.float32)
    monkeypatch.setattr(_session, "PATH_RECHECK_S", 3600.0)
    dev = toy_inventory().device("toy:0")
    with accelpool.open_session(dev, isolate=False, max_models=1) as s:
        for _ in range(3):  # the same object: the fast path after the first run
            np.testing.assert_array_equal(s.run(path, {"x": x})["y"], [6, 6])
        np.testing.assert_array_equal(s.run(other, {"x": x})["y"], [0, 0])  # evicts m.onnx
        np.testing.assert_array_equal(s.run(path, {"x": x})["y"], [6, 6])  # loaded again
        onnx.save(_model("Mul"), path)
        os.utime(path, ns=(1, 1))
        np.testing.assert_array_equal(s.run(path, {"x": x})["y"], [6, 6])  # trusted within
        monkeypatch.setattr(_session, "PATH_RECHECK_S", 0.0)
        np.testing.assert_array_equal(s.run(path, {"x": x})["y"], [9, 9])  # past it: the edit
    with pytest.raises(accelpool.InvalidRequest, match="closed"):
        s.run(path, {"x": x})


@pytest.mark.parametrize("by", ["handle", "path"])
def test_a_worker_killed_between_warm_runs_is_reported_then_replaced(
    by: str, tmp_path: Path
) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model("Add"), path)
    x = np.full((2,), 3, np.float32)
    with open_session(toy_inventory().device("toy:0"), isolate=True) as s:
        model = s.load(path) if by == "handle" else path
        for _ in range(3):  # warm: the short path to the worker from the second run on
            np.testing.assert_array_equal(s.run(model, {"x": x})["y"], [6, 6])
        first = s.worker_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with pytest.raises(WorkerDied, match="killed by signal SIGKILL"):
            s.run(model, {"x": x})
        np.testing.assert_array_equal(s.run(model, {"x": x})["y"], [6, 6])  # a new worker
        assert s.worker_pid not in (None, first)


def test_repeated_runs_over_one_shared_array_see_its_new_contents_and_the_right_model() -> None:
    with open_session(toy_inventory().device("toy:0"), isolate=True, max_models=1) as s:
        add, mul = s.load(_model("Add")), s.load(_model("Mul"))  # mul evicts add
        x = s.shared_array(2)
        for value in (1.0, 2.0, 5.0):  # the same request each time: the worker reruns it
            x[...] = value
            np.testing.assert_array_equal(s.run(add, {"x": x})["y"], [2 * value] * 2)
        np.testing.assert_array_equal(s.run(mul, {"x": x})["y"], [25, 25])  # evicts add
        np.testing.assert_array_equal(s.run(add, {"x": x})["y"], [10, 10])  # loaded again
        np.testing.assert_array_equal(s.run(add, {"x": x[:1]})["y"], [10])  # a slice of it


def test_a_repeated_request_follows_a_reshaped_or_replaced_shared_array() -> None:
    with open_session(toy_inventory().device("toy:0"), isolate=True) as s:
        add = s.load(_model("Add"))
        x = s.shared_array(4)
        x[...] = [1, 2, 3, 4]
        for _ in range(2):
            np.testing.assert_array_equal(s.run(add, {"x": x})["y"], [2, 4, 6, 8])
        x.shape = (2, 2)  # the same array object, another shape
        np.testing.assert_array_equal(s.run(add, {"x": x})["y"], [[2, 4], [6, 8]])
        other = s.shared_array(4)
        other[...] = 10
        np.testing.assert_array_equal(s.run(add, {"x": other})["y"], [20] * 4)
        np.testing.assert_array_equal(s.run(add, {"x": x})["y"], [[2, 4], [6, 8]])


def test_small_isolated_outputs_come_back_as_writable_arrays_of_their_dtype_and_shape() -> None:
    with open_session(toy_inventory().device("toy:0"), isolate=True) as s:
        for dtype, np_dtype in ((TensorProto.FLOAT, np.float32), (TensorProto.INT64, np.int64)):
            x = np.arange(6, dtype=np_dtype).reshape(2, 3)
            y = s.run(_model("Add", dtype), {"x": x})["y"]
            assert y.dtype == np_dtype and y.shape == (2, 3) and y.flags.writeable
            y += 1  # the caller's own array
            np.testing.assert_array_equal(y, 2 * x + 1)
