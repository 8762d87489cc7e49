"""Sessions: the visibility environment, and an ONNX model run on the target."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accelpool.capabilities import Capability, Support
from accelpool.errors import (
    AccelPoolError,
    InsufficientCapacity,
    InvalidRequest,
    UnsupportedOperation,
)
from accelpool.inventory import Device, Inventory, Partition
from accelpool.spi import Target
from accelpool.types import DeviceInfo, PartitionInfo
from accelpool_conformance import invariants as inv
from accelpool_conformance import truth
from accelpool_conformance.context import SuiteContext
from accelpool_conformance.fixtures import Ledger, Plan, devices_by_kind, smallest_of_kind
from accelpool_conformance.invariants import CheckedBackend, check, describe, expect_error

#: Set in the suite's process while a session starts: an isolated worker must not see it.
LEAK_VAR = "ACCELPOOL_CONFORMANCE_VISIBLE_DEVICES"


def _session_api() -> Any:
    try:
        from accelpool import session
    except ImportError:
        pytest.skip("accelpool.session not available")
    return session


def _list_vars(env: dict[str, str]) -> dict[str, list[str]]:
    """The variables that list devices (``*_VISIBLE_DEVICES`` and kin), split."""
    from accelpool.session._worker import is_visibility_var

    return {k: [t for t in v.split(",") if t] for k, v in env.items() if is_visibility_var(k)}


#: How a backend may refuse one target it cannot serve (a MIG-enabled GPU used whole,
#: a device its runtime cannot reach) while serving others.
REFUSALS = (UnsupportedOperation, InvalidRequest)


def _envs(backend: CheckedBackend, targets: list[Target]) -> dict[str, dict[str, str]]:
    out = {}
    for t in targets:
        try:
            out[t.native_id] = backend.visibility_env([t])
        except REFUSALS:
            continue
    return out


@pytest.fixture
def small_partition(
    suite: SuiteContext, backend: CheckedBackend, plan: Plan, ledger: Ledger
) -> PartitionInfo | None:
    """A partition of the smallest profile on an empty device, when partitions exist."""
    if not suite.supports(Capability.PARTITION) or not plan.partitionable:
        return None
    dev = plan.partitionable[0]
    prof = min(backend.profiles(dev), key=lambda p: (p.memory_bytes, p.compute_units))
    return ledger.create(dev, prof.name)


@pytest.mark.requires(Capability.VISIBILITY)
def test_visibility_env_names_exactly_the_target(
    backend: CheckedBackend, devices: list[DeviceInfo], small_partition: PartitionInfo | None
) -> None:
    targets: list[Target] = list(devices)
    if small_partition is not None:
        targets.append(small_partition)
    envs = _envs(backend, targets)
    check(envs, inv.VISIBILITY, "visibility is declared supported but every target refuses it")
    ids = {t.native_id for t in targets}
    for t in targets:
        if t.native_id not in envs:
            continue
        env = envs[t.native_id]
        check(env, inv.VISIBILITY, f"visibility_env([{t.native_id}]) is empty")
        check(
            backend.visibility_env([t]) == env,
            inv.VISIBILITY,
            f"visibility_env([{t.native_id}]) changes between calls",
        )
        for var, tokens in _list_vars(env).items():
            check(
                len(tokens) == 1,
                inv.VISIBILITY,
                f"visibility_env([{t.native_id}]) sets {var}={env[var]!r}: one target, "
                f"{len(tokens)} entries",
            )
            others = sorted((ids - {t.native_id}) & set(tokens))
            check(
                not others,
                inv.VISIBILITY,
                f"visibility_env([{t.native_id}]) names other targets {others} in {var}",
            )
    seen: dict[tuple[tuple[str, str], ...], str] = {}
    for d in devices:
        if d.native_id in envs:
            key = tuple(sorted(envs[d.native_id].items()))
            check(
                key not in seen,
                inv.VISIBILITY,
                f"devices {seen.get(key)} and {d.native_id} get the same environment {key}",
            )
            seen[key] = d.native_id
    if small_partition is not None and small_partition.native_id in envs:
        parent = next(d for d in devices if d.native_id == small_partition.device_native_id)
        if small_partition.compute_units < parent.compute_units and parent.native_id in envs:
            check(
                envs[small_partition.native_id] != envs[parent.native_id],
                inv.VISIBILITY,
                f"partition {small_partition.native_id} gets its whole device's environment "
                f"{envs[parent.native_id]}",
            )
    pair = [d for d in devices if d.native_id in envs][:2]
    if len(pair) == 2:
        try:
            both = backend.visibility_env(pair)
        except REFUSALS:
            return  # a backend may refuse several targets at once, but not misname them
        one = {k: set(v) for k, v in _list_vars(envs[pair[0].native_id]).items()}
        two = {k: set(v) for k, v in _list_vars(envs[pair[1].native_id]).items()}
        for var, tokens in _list_vars(both).items():
            if var in one and var in two:
                check(
                    set(tokens) == one[var] | two[var],
                    inv.VISIBILITY,
                    f"visibility_env of {pair[0].native_id} and {pair[1].native_id} sets "
                    f"{var}={both[var]!r}; alone they set {one[var]} and {two[var]}",
                )


@pytest.fixture
def model_file() -> Iterator[tuple[Path, dict[str, np.ndarray], np.ndarray]]:
    """A small ONNX model (relu(x @ w + b)), its feeds and the numpy answer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    b = rng.standard_normal((4,)).astype(np.float32)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "accelpool_conformance",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    with tempfile.TemporaryDirectory(prefix="accelpool-conformance-model-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path))
        yield path, {"x": x}, np.maximum(x @ w + b, 0)


def _public(inventory: Inventory, suite: SuiteContext, target: Target) -> Device | Partition:
    if isinstance(target, PartitionInfo):
        return inventory.partition(f"{suite.backend_name}:{target.native_id}")
    return inventory.device(f"{suite.backend_name}:{target.native_id}")


def _runnable(backend: CheckedBackend, targets: list[Target]) -> list[Target]:
    out = []
    for t in targets:
        try:
            backend.onnx_placement(t)
        except REFUSALS:
            continue
        out.append(t)
    return out


def _simulated(suite: SuiteContext) -> bool:
    raw = suite.raw_backend()
    return suite.sim is not None or getattr(raw.context, "sim", None) is not None


@pytest.mark.requires(Capability.SESSION_ONNX)
def test_onnx_outputs_equal_the_numpy_reference(
    suite: SuiteContext,
    backend: CheckedBackend,
    inventory: Inventory,
    devices: list[DeviceInfo],
    small_partition: PartitionInfo | None,
    model_file: tuple[Path, dict[str, np.ndarray], np.ndarray],
) -> None:
    session = _session_api()
    path, feeds, want = model_file
    targets = _runnable(backend, [*devices, *([small_partition] if small_partition else [])])
    check(
        targets,
        inv.ONNX_MATCHES,
        "session.onnx is declared supported but every target refuses onnx_placement",
    )
    exp = suite.expectations
    rtol, atol = (exp.rtol, exp.atol) if exp else (1e-4, 1e-5)
    # Under simulation there is no accelerator: the CPU stands in for its provider.
    fallback = _simulated(suite)
    plan = [(targets[0], False)]
    partitions = [t for t in targets if isinstance(t, PartitionInfo)]
    plan.append((partitions[0] if partitions else targets[0], True))
    for target, isolate in plan:
        handle = _public(inventory, suite, target)
        mode = "isolated" if isolate else "in-process"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with session.open_session(handle, isolate=isolate, allow_fallback=fallback) as s:
                    got = s.run(path, feeds)
        except AccelPoolError as e:
            inv.broken(
                inv.ONNX_MATCHES, f"running the model on {handle.id} ({mode}) raised {describe(e)}"
            )
        check(
            set(got) == {"y"},
            inv.ONNX_MATCHES,
            f"{handle.id} ({mode}) returned outputs {sorted(got)}, expected ['y']",
        )
        y = np.asarray(got["y"])
        check(
            y.shape == want.shape and np.allclose(y, want, rtol=rtol, atol=atol),
            inv.ONNX_MATCHES,
            f"{handle.id} ({mode}): max difference {float(np.max(np.abs(y - want))):.3g} "
            f"from numpy (rtol {rtol}, atol {atol})"
            if y.shape == want.shape
            else f"{handle.id} ({mode}): output shape {y.shape}, expected {want.shape}",
        )


@pytest.mark.requires(Capability.SESSION_ONNX, Capability.VISIBILITY)
def test_session_environment_names_exactly_its_target(
    suite: SuiteContext,
    backend: CheckedBackend,
    inventory: Inventory,
    devices: list[DeviceInfo],
    small_partition: PartitionInfo | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = _session_api()
    targets = [t for t in [small_partition, *devices] if t is not None]
    envs = _envs(backend, targets)
    target = next((t for t in targets if t.native_id in envs), None)
    if target is None:
        pytest.skip("no target names a visibility environment")
    handle = _public(inventory, suite, target)
    want = envs[target.native_id]
    monkeypatch.setenv(LEAK_VAR, "leaked-from-the-parent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with session.open_session(handle, isolate=True, allow_fallback=True) as s:
            check(
                dict(s.env) == want,
                inv.SESSION_ENV,
                f"session on {handle.id} has env {s.env}; the backend names {want}",
            )
            seen = s.worker_env(sorted({*want, LEAK_VAR}))
            listing = s.worker_env()
    check(
        seen == want,
        inv.SESSION_ENV,
        f"the isolated worker for {handle.id} runs with {seen}; the target's environment is {want}",
    )
    stray = {k: v for k, v in listing.items() if k not in want}
    check(
        not stray,
        inv.SESSION_ENV,
        f"the isolated worker for {handle.id} also sees visibility variables {stray}",
    )
    check(
        os.environ.get(LEAK_VAR) == "leaked-from-the-parent",
        inv.SESSION_ENV,
        "opening a session changed the caller's own environment",
    )


@pytest.mark.requires(Capability.VISIBILITY)
def test_visibility_ordinals_resolve_to_the_target(
    backend: CheckedBackend, devices: list[DeviceInfo]
) -> None:
    """``ASCEND_RT_VISIBLE_DEVICES=3``-style tokens name the target itself, not some device."""
    envs = _envs(backend, list(devices))
    truth.check_device_envs(devices, envs)


def _some_of_kind(
    ledger: Ledger, backend: CheckedBackend, dev: DeviceInfo, kind: str, want: int
) -> list[PartitionInfo]:
    """Up to ``want`` live partitions of ``kind`` on ``dev``, smallest profiles first."""
    profiles = sorted(
        (p for p in backend.profiles(dev) if p.kind == kind),
        key=lambda p: (p.memory_bytes, p.compute_units, p.name),
    )
    made: list[PartitionInfo] = []
    for p in profiles:
        while len(made) < want:
            try:
                made.append(ledger.create(dev, p.name))
            except InsufficientCapacity:
                break
    return made


@pytest.mark.requires(Capability.VISIBILITY, Capability.PARTITION)
def test_each_partition_environment_names_it_and_no_other(
    backend: CheckedBackend, plan: Plan, ledger: Ledger
) -> None:
    """With two live partitions on one device, each one's environment names it alone."""
    # The last devices: an ordinal naming the parent device (not 0) shows there.
    by_kind = devices_by_kind(plan, backend, last=True)
    if not by_kind:
        pytest.skip(plan.problem or "no device can be partitioned")
    for kind, dev in by_kind.items():
        parts = _some_of_kind(ledger, backend, dev, kind, 2)
        envs = _envs(backend, list(parts))
        served = [p for p in parts if p.native_id in envs]
        if len(served) >= 2:
            truth.check_partition_envs(served, envs)
        for p in parts:
            ledger.destroy(p)


def _placement_names(backend: CheckedBackend, target: Target) -> list[str]:
    import onnxruntime as ort

    placement = backend.onnx_placement(target)
    names = [p.name for p in placement.providers]
    where = f"onnx_placement({target.native_id})"
    check(names, inv.PROVIDERS_REAL, f"{where} names no execution provider")
    check(len(set(names)) == len(names), inv.PROVIDERS_REAL, f"{where} repeats one: {names}")
    unknown = [n for n in names if n not in ort.get_all_providers()]
    check(
        not unknown,
        inv.PROVIDERS_REAL,
        f"{where} names {unknown}, which onnxruntime.get_all_providers() does not list",
    )
    for p in placement.providers:
        check(
            all(isinstance(k, str) and isinstance(v, str | int) for k, v in p.options.items()),
            inv.SPI_TYPES,
            f"{where}: options of {p.name} must map names to str or int: {dict(p.options)}",
        )
    threads = placement.intra_op_num_threads
    check(
        threads is None or (isinstance(threads, int) and threads >= 1),
        inv.PROVIDERS_REAL,
        f"{where}: intra_op_num_threads {threads!r} must be None or a positive int",
    )
    return names


@pytest.mark.requires(Capability.SESSION_ONNX)
def test_onnx_providers_are_real(
    suite: SuiteContext,
    backend: CheckedBackend,
    inventory: Inventory,
    devices: list[DeviceInfo],
    small_partition: PartitionInfo | None,
    model_file: tuple[Path, dict[str, np.ndarray], np.ndarray],
) -> None:
    """Every provider a placement names exists; a session leads with the placement's first
    provider, on the CPU only when the placement says so (or a simulation falls back)."""
    import onnxruntime as ort

    session = _session_api()
    targets = _runnable(backend, [*devices, *([small_partition] if small_partition else [])])
    if not targets:
        pytest.skip("every target refuses onnx_placement (reported by the ONNX check)")
    names = {t.native_id: _placement_names(backend, t) for t in targets}
    available = set(ort.get_available_providers())
    fallback = _simulated(suite)
    partitions = [t for t in targets if isinstance(t, PartitionInfo)]
    for target in [targets[0], *[p for p in partitions[:1] if p is not targets[0]]]:
        want = names[target.native_id]
        handle = _public(inventory, suite, target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with session.open_session(handle, isolate=False, allow_fallback=fallback) as s:
                used = list(s.load(model_file[0]).providers)
        fell_back = fallback and want[0] not in available
        lead = "CPUExecutionProvider" if fell_back else want[0]
        check(
            used[:1] == [lead],
            inv.PROVIDERS_REAL,
            f"a session on {handle.id} runs on {used}; its placement names {want}, so it "
            f"must lead with {lead} (the CPU only where the placement or a simulated "
            "fallback says so)",
        )
        stray = [u for u in used if u not in want and u != "CPUExecutionProvider"]
        check(not stray, inv.PROVIDERS_REAL, f"a session on {handle.id} also uses {stray}")
    whole = [t for t in targets if isinstance(t, DeviceInfo)]
    for part in partitions:
        # its own device, else any whole device of the backend that runs models
        parent = next((t for t in whole if t.native_id == part.device_native_id), None)
        parent = parent or (whole[0] if whole else None)
        if parent is not None:
            mine, theirs = names[part.native_id][:1], names[parent.native_id][:1]
            check(
                mine == theirs,
                inv.PROVIDERS_REAL,
                f"onnx_placement({part.native_id}) leads with {mine}, device "
                f"{parent.native_id} with {theirs}: a partition runs where the backend's "
                "devices run, not quietly on another provider",
            )


@pytest.mark.requires(Capability.SESSION_ONNX, Capability.PARTITION)
def test_every_partition_kind_is_a_session_target(
    suite: SuiteContext,
    backend: CheckedBackend,
    inventory: Inventory,
    plan: Plan,
    ledger: Ledger,
    model_file: tuple[Path, dict[str, np.ndarray], np.ndarray],
) -> None:
    """A partition of each kind the backend creates runs the model, unless the backend
    declares ``session.onnx.<kind>`` unsupported."""
    session = _session_api()
    by_kind = devices_by_kind(plan, backend)
    if not by_kind:
        pytest.skip(plan.problem or "no device can be partitioned")
    path, feeds, want = model_file
    caps = backend.capabilities()
    fallback = _simulated(suite)
    for kind, dev in by_kind.items():
        prof = smallest_of_kind(backend, dev, kind)
        part = ledger.create(dev, prof.name)
        declared = inv.SESSION_KIND_PREFIX + kind
        if caps.support(declared) is Support.UNSUPPORTED:
            expect_error(
                inv.UNSUPPORTED_RAISES,
                UnsupportedOperation,
                f"{declared} is declared unsupported, but onnx_placement({part.native_id})",
                partial(backend.onnx_placement, part),
            )
            ledger.destroy(part)
            continue
        what = f"{kind} partition {part.native_id} ({prof.name})"
        try:
            backend.onnx_placement(part)
        except REFUSALS as e:
            inv.broken(
                inv.EVERY_PARTITION_TARGET,
                f"{what} refuses onnx_placement: {describe(e)}; a backend whose {kind} "
                f"partitions cannot run models declares {declared} unsupported",
            )
        handle = _public(inventory, suite, part)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with session.open_session(handle, isolate=False, allow_fallback=fallback) as s:
                    got = s.run(path, feeds)
        except AccelPoolError as e:
            inv.broken(inv.EVERY_PARTITION_TARGET, f"running the model on {what}: {describe(e)}")
        y = np.asarray(got.get("y"))
        check(
            y.shape == want.shape and np.allclose(y, want, rtol=1e-4, atol=1e-5),
            inv.EVERY_PARTITION_TARGET,
            f"the model on {what} gave {y.shape} outputs different from numpy's",
        )
        ledger.destroy(part)
