"""Claims guard what they claim: no destroy from under a holder, unless forced."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import accelpool
from accelpool import claims
from accelpool.session import open_session
from accelpool.testing import run_cli, toy_inventory

# Holds a session on the partition given in argv[1] until its stdin closes.
HOLDER = textwrap.dedent(
    """
    import sys
    import accelpool
    with accelpool.discover(sim="dgx-a100") as inv:
        with accelpool.open_session(inv.partition(sys.argv[1]), isolate=False):
            print("HELD", flush=True)
            sys.stdin.read()
    """
)


def test_cli_destroy_of_a_partition_held_by_a_live_session(tmp_path: Path) -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        part = inv.device("nvidia:0").create_partition("1g.5gb")
    script = tmp_path / "serve_llm.py"
    script.write_text(HOLDER)
    holder = subprocess.Popen(
        [sys.executable, str(script), part.id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
        env = dict(os.environ, ACCELPOOL_SIM="dgx-a100", ACCELPOOL_LOG="WARNING")
        refused = run_cli("partition", "destroy", part.id, env=env)
        assert refused.code == 1 and refused.err.count("\n") == 1, refused
        assert "InUse" in refused.err and f"pid {holder.pid}" in refused.err
        assert "serve_llm.py" in refused.err  # the holder's command line
        assert "--force" in refused.err
        listed = run_cli("ls", "--json", env=env).out
        assert part.id in listed  # still there: the session keeps its partition

        forced = run_cli("partition", "destroy", part.id, "--force", env=env)
        assert forced.code == 0, forced
        assert f"Destroyed partition {part.id}" in forced.out
        assert f"Forced: {part.id} was claimed by pid {holder.pid}" in forced.out
        assert "forced: destroy" in forced.err  # logged for operators
        assert part.id not in run_cli("ls", "--json", env=env).out
    finally:
        holder.kill()
        holder.wait(timeout=30)
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()


def test_api_destroy_respects_session_and_named_claims(caplog: pytest.LogCaptureFixture) -> None:
    inv = toy_inventory()
    device = inv.device("toy:0")
    part = device.create_partition("2s")
    with open_session(device, isolate=False):  # the device itself is claimed whole
        with pytest.raises(accelpool.InUse, match=f"through device {device.id}") as info:
            part.destroy()
        assert info.value.holder_pid == os.getpid()  # type: ignore[attr-defined]
        assert part.id in {p.id for p in device.partitions()}
    held = claims.claim(part, holder="k8s:uid-3", owner="pod ns/p")
    with pytest.raises(accelpool.InUse, match=r"k8s:uid-3 \(pod ns/p\).*--release k8s:uid-3"):
        part.destroy()
    with caplog.at_level(logging.WARNING, logger="accelpool.claims"):
        part.destroy(force=True)
    assert "forced: destroy" in caplog.text and "k8s:uid-3" in caplog.text
    assert part.id not in {p.id for p in device.partitions()}
    assert claims.release(held) == 1
    other = device.create_partition("2s")
    other.destroy()  # nobody holds it: no force needed


def test_guard_holds_the_target_while_the_operation_runs() -> None:
    inv = toy_inventory()
    part = inv.device("toy:0").create_partition("2s")
    with claims.guard(part, "destroy") as overridden:
        assert overridden == []
        with pytest.raises(accelpool.InUse):
            claims.claim(part, holder="ray:late")
    assert claims.holders() == []  # the guard's own claim is gone
    claims.claim(part, holder="ray:late")
    with (
        pytest.raises(accelpool.InUse, match="cannot reshape"),
        claims.guard(inv.device("toy:0"), "reshape"),
    ):
        pass
    with claims.guard(inv.device("toy:0"), "reshape", force=True) as overridden:
        assert [c.holder for c in overridden] == ["ray:late"]


# Destroys the partition argv[1] inside its own guard, after a pause.
SLOW_DESTROYER = textwrap.dedent(
    """
    import sys, time
    import accelpool
    from accelpool import claims
    with accelpool.discover(sim="dgx-a100") as inv:
        part = inv.partition(sys.argv[1])
        with claims.guard(part, "destroy"):
            print("HELD", flush=True)
            time.sleep(0.5)
            part.destroy()  # nested in its own process's guard: no wait
    """
)


def test_racing_destroys_end_in_one_success_and_one_not_found() -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        part = inv.device("nvidia:0").create_partition("1g.5gb")
        other = subprocess.Popen(
            [sys.executable, "-c", SLOW_DESTROYER, part.id], stdout=subprocess.PIPE, text=True
        )
        try:
            assert other.stdout is not None and other.stdout.readline().strip() == "HELD"
            with pytest.raises(accelpool.InUse, match="destroy in progress"):
                open_session(part, isolate=False)
            with pytest.raises(accelpool.NotFound):
                part.destroy()  # waits for the other destroy, then finds nothing
            assert other.wait(timeout=60) == 0
        finally:
            if other.poll() is None:
                other.kill()
            other.wait(timeout=30)
            if other.stdout is not None:
                other.stdout.close()
        assert part.id not in {p.id for p in inv.device("nvidia:0").partitions()}
