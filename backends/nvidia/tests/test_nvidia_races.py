"""Races with other processes, creators killed half way, and lost GPUs (issue 10, items 7-9)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import accelpool
from accelpool.cli.app import main as cli_main
from accelpool.errors import AccelPoolError, DeviceLost, InvalidRequest

Inv = Callable[[str], accelpool.Inventory]

#: Creates a partition and is killed with SIGKILL when it reaches NVML function argv[4].
_KILLED_CREATOR = """
import os, signal, sys
import accelpool
gpu, profile, placement, victim = sys.argv[1:5]
inv = accelpool.discover(sim="dgx-a100", backends=["nvidia"])
dev = inv.device(f"nvidia:{gpu}")
lib = dev.backend_instance.simulator.lib
setattr(lib, victim, lambda *a: os.kill(os.getpid(), signal.SIGKILL))
dev.create_partition(profile, placement=None if placement == "-" else int(placement))
"""


def _kill_midway(gpu: int, profile: str, placement: int | None, at: str) -> None:
    """A creator in another process, killed -9 when it reaches NVML function ``at``."""
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_CREATOR, str(gpu), profile, str(placement or "-"), at],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli_main(["--sim", "dgx-a100", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _race(lib: Any, function: str, action: Callable[[], None]) -> list[int]:
    """Run ``action`` (another process's work) just before the next call of ``function``."""
    original = getattr(lib, function)
    fired: list[int] = []

    def racing(*args: Any) -> Any:
        if not fired:
            fired.append(1)
            action()
        return original(*args)

    setattr(lib, function, racing)
    return fired


# -- item 7: listing races destroys ---------------------------------------------------
@pytest.mark.parametrize("between", ["nvmlGpuInstanceGetInfo", "nvmlDeviceGetGpuInstanceId"])
def test_listing_reads_again_when_another_process_destroys_meanwhile(
    inventory: Inv, between: str
) -> None:
    inv, other = inventory("dgx-a100"), inventory("dgx-a100")
    dev = inv.device("nvidia:0")
    keep = dev.create_partition("1g.5gb")
    gone = dev.create_partition("1g.5gb")
    victim = other.partition(gone.id)
    fired = _race(dev.backend_instance.simulator.lib, between, victim.destroy)
    assert [p.id for p in dev.partitions()] == [keep.id]
    assert fired


def test_create_choosing_a_placement_survives_a_destroy_meanwhile(inventory: Inv) -> None:
    inv, other = inventory("dgx-a100"), inventory("dgx-a100")
    dev = inv.device("nvidia:0")
    first = dev.create_partition("1g.5gb")
    victim = other.partition(first.id)
    _race(dev.backend_instance.simulator.lib, "nvmlGpuInstanceGetInfo", victim.destroy)
    made = dev.create_partition("1g.5gb")
    assert [p.id for p in dev.partitions()] == [made.id]


def test_destroying_what_another_process_destroyed_meanwhile_is_not_found(
    inventory: Inv,
) -> None:
    inv, other = inventory("dgx-a100"), inventory("dgx-a100")
    part = inv.device("nvidia:0").create_partition("1g.5gb")
    twin = other.partition(part.id)
    lib = inv.device("nvidia:0").backend_instance.simulator.lib
    _race(lib, "nvmlDeviceGetGpuInstanceId", twin.destroy)
    with pytest.raises(AccelPoolError) as e:
        part.destroy()
    assert not isinstance(e.value, InvalidRequest), e.value  # never the caller's fault
    assert "no longer exists" in str(e.value)


# -- item 8: a creator killed between the GPU- and compute-instance steps -----------------
def test_killed_creator_leaves_an_incomplete_partition_that_gc_removes(
    capsys: pytest.CaptureFixture[str], inventory: Inv
) -> None:
    _kill_midway(0, "3g.20gb", None, "nvmlGpuInstanceCreateComputeInstance")
    code, out, _ = _cli(capsys, "ls")
    assert code == 0
    (row,) = [line for line in out.splitlines() if " 3g.20gb" in line]
    assert "incomplete" in row and "| mig " in row, out
    assert "accelpool partition gc" in out
    code, out, _ = _cli(capsys, "ls", "--json")
    (part,) = json.loads(out)["devices"][0]["partitions"]
    assert part["complete"] is False
    # refused as a target
    inv = inventory("dgx-a100")
    with pytest.raises(InvalidRequest, match="without a compute instance"):
        inv.partition("nvidia:" + part["id"].split(":", 1)[1]).visibility_env()
    code, out, _ = _cli(capsys, "partition", "gc")
    assert code == 0 and "removed GPU instance" in out and "left half-made" in out
    assert json.loads(_cli(capsys, "ls", "--json")[1])["devices"][0]["partitions"] == []
    assert _cli(capsys, "partition", "gc")[1].startswith("Nothing half-made")


#: Destroys partition argv[1] and is killed with SIGKILL when it reaches NVML function
#: argv[2] (after the compute instance is gone, before the GPU instance is).
_KILLED_DESTROYER = """
import os, signal, sys
import accelpool
part_id, victim = sys.argv[1:3]
inv = accelpool.discover(sim="dgx-a100", backends=["nvidia"])
part = inv.partition(part_id)
lib = part.device.backend_instance.simulator.lib
setattr(lib, victim, lambda *a: os.kill(os.getpid(), signal.SIGKILL))
part.destroy()
"""


def test_gc_finishes_a_destroy_killed_between_its_two_steps(inventory: Inv) -> None:
    # The storm test found this: a bare GPU instance that no create had recorded.
    part = inventory("dgx-a100").device("nvidia:4").create_partition("2g.10gb")
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_DESTROYER, part.id, "nvmlGpuInstanceDestroy"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    dev = inventory("dgx-a100").device("nvidia:4")
    assert [(p.profile, p.complete) for p in dev.partitions()] == [("2g.10gb", False)]
    inv = accelpool.discover(sim="dgx-a100", backends=["nvidia"], collect_garbage=True)
    try:
        assert inv.device("nvidia:4").partitions() == []
    finally:
        inv.close()


def test_next_create_removes_what_a_killed_creator_left(inventory: Inv) -> None:
    # Killed before it could even record its GPU instance id: found by GPU and profile.
    _kill_midway(1, "7g.40gb", 0, "nvmlGpuInstanceGetInfo")
    dev = inventory("dgx-a100").device("nvidia:1")
    assert [(p.profile, p.complete) for p in dev.partitions()] == [("7g.40gb", False)]
    made = dev.create_partition("3g.20gb")  # the bare 7g instance held the whole GPU
    assert [p.id for p in dev.partitions()] == [made.id]


def test_discovery_with_collect_garbage_cleans_up(inventory: Inv) -> None:
    _kill_midway(2, "1g.5gb", None, "nvmlGpuInstanceCreateComputeInstance")
    assert not inventory("dgx-a100").device("nvidia:2").partitions()[0].complete
    inv = accelpool.discover(sim="dgx-a100", backends=["nvidia"], collect_garbage=True)
    try:
        assert inv.device("nvidia:2").partitions() == []
    finally:
        inv.close()


def test_gc_never_touches_a_live_creators_half_made_partition(inventory: Inv) -> None:
    inv, other = inventory("dgx-a100"), inventory("dgx-a100")
    dev = inv.device("nvidia:3")
    removed: list[str] = []

    def meanwhile() -> None:
        # While this create sits between its two steps, another creator of the same
        # shape is killed half way, and gc runs in a third process.
        _kill_midway(3, "1g.5gb", 0, "nvmlGpuInstanceCreateComputeInstance")
        removed.extend(other.collect_garbage())

    _race(dev.backend_instance.simulator.lib, "nvmlGpuInstanceCreateComputeInstance", meanwhile)
    made = dev.create_partition("1g.5gb", placement=6)
    assert len(removed) == 1 and "GPU instance" in removed[0]
    assert [(p.id, p.complete) for p in dev.partitions()] == [(made.id, True)]


# -- item 9: a lost GPU ---------------------------------------------------------------------
def test_lost_gpu_is_listed_as_lost_and_every_operation_says_so(
    capsys: pytest.CaptureFixture[str], inventory: Inv
) -> None:
    inv = inventory("dgx-a100")
    before = [d.id for d in inv.devices()]
    dev = inv.device("nvidia:3")
    part = dev.create_partition("1g.5gb")
    dev.backend_instance.inject_fault("device-lost", dev.info)

    code, out, _ = _cli(capsys, "ls")
    assert code == 0 and "device nvidia:3 is lost" in out
    assert any(line.startswith("| nvidia:3 ") and "lost" in line for line in out.splitlines())
    docs = json.loads(_cli(capsys, "ls", "--json")[1])["devices"]
    assert [d["index"] for d in docs] == list(range(8))
    assert [d["id"] for d in docs if not d["lost"]] == before[:3] + before[4:]
    assert [d["index"] for d in docs if d["lost"]] == [3]
    for args in (
        ("profiles", "nvidia:3"),
        ("partition", "create", "nvidia:3", "1g.5gb"),
        ("partition", "destroy", part.id),
        ("run", "model.onnx", "--on", "nvidia:3"),
    ):
        code, _, err = _cli(capsys, *args)
        assert code == 1 and err.startswith("accelpool: DeviceLost: "), (args, err)
    fresh = inventory("dgx-a100").device("nvidia:3")
    assert fresh.lost
    for call in (fresh.profiles, fresh.partitions, fresh.telemetry, fresh.visibility_env):
        with pytest.raises(DeviceLost):
            call()
