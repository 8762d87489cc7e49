"""Session claims: one holder per target, across processes, surviving crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import accelpool
from accelpool.session import ClaimStore, holder_alive, open_session, process_start_time
from accelpool.testing import toy_inventory

# A process that races for toy:toy-0: it waits for GO_FILE, opens a session and, if it
# won, holds it until its stdin closes (or it is killed).
RACER = textwrap.dedent(
    """
    import os, sys, time
    import accelpool
    from accelpool.testing import toy_inventory

    inv = toy_inventory()
    target = inv.device("toy:0")
    print("READY", flush=True)
    go = sys.argv[1]
    while not os.path.exists(go):
        time.sleep(0.001)
    try:
        session = accelpool.open_session(target, isolate=False)
    except accelpool.InUse as e:
        print("INUSE", e.holder_pid, str(e), flush=True)
        sys.exit(3)
    print("WON", os.getpid(), flush=True)
    sys.stdin.read()
    """
)


def _racer(tmp_path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RACER, str(tmp_path / "go")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    return proc


def _wait_state(pid: int, states: str) -> None:
    """Wait (bounded) until /proc says ``pid`` is in one of ``states``."""
    for _ in range(500):
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if raw[raw.rfind(")") + 2] in states:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never reached state {states}")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_two_processes_race_exactly_one_wins_and_kill_9_frees_it(tmp_path: Path) -> None:
    a, b = _racer(tmp_path), _racer(tmp_path)
    try:
        (tmp_path / "go").touch()
        lines = {}
        for proc in (a, b):
            assert proc.stdout is not None
            lines[proc.pid] = proc.stdout.readline().split()
        winners = [pid for pid, words in lines.items() if words[0] == "WON"]
        losers = [pid for pid, words in lines.items() if words[0] == "INUSE"]
        assert len(winners) == 1 and len(losers) == 1, lines
        winner = a if winners[0] == a.pid else b
        loser = b if winner is a else a
        assert loser.wait(timeout=30) == 3
        # The loser's InUse names the winner's pid, in its attribute and its message.
        assert lines[loser.pid][1] == str(winner.pid)
        assert f"pid {winner.pid}" in " ".join(lines[loser.pid][2:])

        # While the winner lives, nobody else gets the target.
        target = toy_inventory().device("toy:0")
        with pytest.raises(accelpool.InUse, match=f"pid {winner.pid}"):
            open_session(target, isolate=False)

        # kill -9: no atexit, no close. The unreaped zombie holds nothing any more.
        os.kill(winner.pid, signal.SIGKILL)
        _wait_state(winner.pid, "ZX")
        with open_session(target, isolate=False) as s:
            assert s.claim is not None and s.claim.pid == os.getpid()
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def test_a_second_session_in_the_same_process_is_refused_until_close() -> None:
    target = toy_inventory().device("toy:0")
    with open_session(target, isolate=False) as first:
        with pytest.raises(accelpool.InUse, match=rf"this process pid {os.getpid()}") as info:
            open_session(target, isolate=False)
        assert info.value.holder_pid == os.getpid()  # type: ignore[attr-defined]
        assert first.claim is not None
        assert ClaimStore().holder(target.id) == first.claim
    assert first.closed and first.claim is None
    assert ClaimStore().claims() == []
    with open_session(target, isolate=False):
        pass


def test_other_devices_are_independent() -> None:
    inv = toy_inventory()
    with (
        open_session(inv.device("toy:0"), isolate=False),
        open_session(inv.device("toy:1"), isolate=False),
    ):
        assert {c.target for c in ClaimStore().claims()} == {"toy:toy-0", "toy:toy-1"}


def test_device_and_its_partitions_exclude_each_other() -> None:
    inv = toy_inventory()
    device = inv.device("toy:0")
    p1 = device.create_partition("2s")
    p2 = device.create_partition("2s")
    with open_session(p1, isolate=False):
        with pytest.raises(accelpool.InUse, match=f"partition {p1.id}"):
            open_session(device, isolate=False)
        with open_session(p2, isolate=False):  # a sibling partition is fine
            pass
    with open_session(device, isolate=False):
        with pytest.raises(accelpool.InUse, match=f"on device {device.id}"):
            open_session(p1, isolate=False)
        # another device's partitions are not affected
        other = inv.device("toy:1").create_partition("1s")
        with open_session(other, isolate=False):
            pass


def test_a_recycled_pid_is_not_mistaken_for_the_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    store = ClaimStore()
    # A claim by "our" pid but a process that started at another time: a dead holder
    # whose pid the kernel has since given to us.
    with monkeypatch.context() as m:
        m.setattr("accelpool.session._claims.process_start_time", lambda pid: -1)
        stale = store.acquire("toy:toy-0", "toy:toy-0", "device")
    assert not stale.holder_alive()
    target = toy_inventory().device("toy:0")
    with open_session(target, isolate=False) as s:
        assert s.claim is not None and s.claim.token != stale.token
        assert [c.token for c in store.claims()] == [s.claim.token]


def test_liveness_rules() -> None:
    me = os.getpid()
    assert holder_alive(me, process_start_time(me))
    assert not holder_alive(0, None)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not holder_alive(proc.pid, None)  # gone and reaped
    if process_start_time(me) is not None:
        assert not holder_alive(me, process_start_time(me) + 1)  # type: ignore[operator]


def test_claims_are_released_at_normal_exit_without_close(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import accelpool
        from accelpool.testing import toy_inventory
        inv = toy_inventory()
        s = accelpool.open_session(inv.device("toy:0"), isolate=True)
        s.worker_env()  # starts the worker
        print(s.worker_pid, flush=True)
        # no close(): the interpreter's exit must release the claim and stop the worker
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    worker_pid = int(out.stdout.split()[-1])
    assert ClaimStore().claims() == []
    assert not holder_alive(worker_pid, None)


def test_claim_store_survives_a_missing_database() -> None:
    store = ClaimStore()
    assert store.claims() == [] and store.reap() == 0
    assert not store.path.exists()


def test_reap_drops_only_dead_holders(monkeypatch: pytest.MonkeyPatch) -> None:
    store = ClaimStore()
    live = store.acquire("toy:toy-1", "toy:toy-1", "device")
    with monkeypatch.context() as m:
        m.setattr("accelpool.session._claims.process_start_time", lambda pid: -1)
        store.acquire("toy:toy-0", "toy:toy-0", "device")
    assert store.reap() == 1
    assert store.claims() == [live]
    assert store.release(live) and not store.release(live)
