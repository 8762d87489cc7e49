"""``accelpool run`` and ``accelpool claims``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from accelpool.cli.app import main
from accelpool.session import ClaimStore
from accelpool.testing import toy_inventory


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """An Add model with an awkward output name, and an input .npy."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y:0/sum", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y:0/sum"])], "g", [x], [y])
    model = tmp_path / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    data = tmp_path / "x.npy"
    np.save(data, np.arange(4, dtype=np.float32))
    return {"model": model, "x": data, "out": tmp_path / "out"}


def _mig(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["--sim", "dgx-a100", "partition", "create", "nvidia:0", "1g.5gb", "--json"]) == 0
    part_id: str = json.loads(capsys.readouterr().out)["id"]
    return part_id


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(), reason="has CUDA"
)
def test_run_on_a_simulated_mig_partition(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    part = _mig(capsys)
    argv = ["--sim", "dgx-a100", "run", str(files["model"]), "--on", part]
    argv += ["--input", f"x={files['x']}", "--output", str(files["out"])]

    # This onnxruntime has no CUDA: refused, one line, unless the fallback is allowed.
    assert main([*argv, "--json"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "UnsupportedOperation" in err and "CUDAExecutionProvider" in err

    assert main([*argv, "--json", "--allow-fallback"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert "warning" in captured.err and "CPUExecutionProvider instead" in captured.err
    assert doc["target"] == part and doc["isolated"] is True
    assert doc["env"] == {"CUDA_VISIBLE_DEVICES": part.split(":", 1)[1]}
    name, options = doc["providers"][0]["name"], doc["providers"][0]["options"]
    assert name == "CUDAExecutionProvider" and int(options["gpu_mem_limit"]) > 0
    assert doc["used_providers"] == ["CPUExecutionProvider"]
    (out,) = doc["outputs"]
    assert out["name"] == "y:0/sum" and out["dtype"] == "float32" and out["shape"] == [4]
    assert out["values"] == [0, 2, 4, 6]
    (saved,) = out["files"]
    assert Path(saved).parent == files["out"] and "/" not in Path(saved).name
    np.testing.assert_array_equal(np.load(saved), [0, 2, 4, 6])
    assert ClaimStore().claims() == []  # released when the command ends


def test_run_prints_a_table(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    part = _mig(capsys)
    argv = ["--sim", "dgx-a100", "run", str(files["model"]), "--on", part, "--in-process"]
    assert main([*argv, "--input", f"x={files['x']}", "--allow-fallback"]) == 0
    out = capsys.readouterr().out
    assert "y:0/sum" in out and "float32" in out
    assert f"on {part} (in-process, CPUExecutionProvider" in out


def test_run_json_leaves_large_outputs_to_files(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(files["x"], np.ones((64, 32), np.float32))  # 2048 values: above the limit
    argv = ["run", str(files["model"]), "--on", "opencl:0", "--in-process", "--json"]
    assert main([*argv, "--input", f"x={files['x']}"]) == 0
    (out,) = json.loads(capsys.readouterr().out)["outputs"]
    assert out["shape"] == [64, 32] and out["values"] is None and out["files"] == []


@pytest.mark.parametrize(
    ("extra", "status", "message"),
    [
        (["--input", "x"], 2, "NAME=FILE.npy"),
        (["--input", "x=/nonexistent.npy"], 1, "cannot read input 'x'"),
        (["--input", "z=X"], 1, "Required inputs"),
    ],
)
def test_run_errors_are_one_line(
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    status: int,
    message: str,
) -> None:
    part = _mig(capsys)
    extra = [e.replace("=X", f"={files['x']}") for e in extra]
    argv = ["--sim", "dgx-a100", "run", str(files["model"]), "--on", part, "--allow-fallback"]
    assert main([*argv, *extra]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_run_on_a_missing_target_or_model(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--sim", "dgx-a100", "run", str(files["model"]), "--on", "nvidia:99"]) == 1
    assert "NotFound" in capsys.readouterr().err
    part = _mig(capsys)
    argv = ["--sim", "dgx-a100", "run", "/nonexistent.onnx", "--on", part, "--allow-fallback"]
    assert main(argv) == 1
    assert "cannot read model file" in capsys.readouterr().err


def test_claims_lists_holders(capsys: pytest.CaptureFixture[str]) -> None:
    from accelpool.session import open_session

    assert main(["claims"]) == 0
    assert "No device or partition is claimed" in capsys.readouterr().out
    with open_session(toy_inventory().device("toy:0"), isolate=False) as s:
        assert main(["claims", "--json"]) == 0
        (doc,) = json.loads(capsys.readouterr().out)
        assert doc["target"] == "toy:toy-0" and doc["pid"] == s.claim.pid  # type: ignore[union-attr]
        assert doc["alive"] is True
        assert main(["claims", "--reap"]) == 0
        out = capsys.readouterr().out
        assert "toy:toy-0" in out and "Dropped 0 claim(s)" in out


def test_run_with_a_clean_worker_environment(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The allow-list alone must be enough for the worker to start and run a model.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    part = _mig(capsys)
    argv = ["--sim", "dgx-a100", "run", str(files["model"]), "--on", part, "--allow-fallback"]
    argv += ["--input", f"x={files['x']}", "--json", "--clean-env", "--pass-env", "HF_*"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["isolated"] is True and doc["outputs"][0]["shape"] == [4]


def _model_with_outputs(folder: Path, names: list[str]) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names]
    nodes = [helper.make_node("Identity", ["x"], [n]) for n in names]
    graph = helper.make_graph(nodes, "g", [x], outs)
    path = folder / "many.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_output_names_too_long_for_a_file_name_are_saved_under_bounded_unique_names(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    part = _mig(capsys)
    names = ["a" * 300 + "1", "a" * 300 + "2", "short"]
    model = _model_with_outputs(files["model"].parent, names)
    argv = ["--sim", "dgx-a100", "run", str(model), "--on", part, "--allow-fallback"]
    argv += ["--input", f"x={files['x']}", "--output", str(files["out"]), "--json"]
    assert main(argv) == 0
    saved = {o["name"]: o["files"] for o in json.loads(capsys.readouterr().out)["outputs"]}
    paths = [Path(f) for fs in saved.values() for f in fs]
    assert len(set(paths)) == 3 and all(len(p.name.encode()) <= 255 for p in paths)
    assert sorted(p.name for p in files["out"].iterdir()) == sorted(p.name for p in paths)


def test_outputs_that_cannot_be_saved_leave_nothing_and_one_line(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    part = _mig(capsys)
    blocker = files["model"].parent / "a-file"
    blocker.write_text("")
    argv = ["--sim", "dgx-a100", "run", str(files["model"]), "--on", part, "--allow-fallback"]
    argv += ["--input", f"x={files['x']}", "--output", str(blocker / "sub")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot save the outputs" in err and "nothing was" in err


@pytest.mark.parametrize("in_process", [False, True])
def test_a_model_path_that_is_not_utf8_runs(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], in_process: bool
) -> None:
    part = _mig(capsys)
    odd = files["model"].parent / os.fsdecode(b"\xff\xfe-model.onnx")
    odd.write_bytes(files["model"].read_bytes())
    argv = ["--sim", "dgx-a100", "run", str(odd), "--on", part, "--allow-fallback"]
    argv += ["--input", f"x={files['x']}", "--json"] + (["--in-process"] if in_process else [])
    assert main(argv) == 0, capsys.readouterr().err
    (out,) = json.loads(capsys.readouterr().out)["outputs"]
    assert out["shape"] == [4]
