"""``accelpool ls``: readings, holders, 100 columns, --json additions, --watch."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import accelpool
from accelpool import claims
from accelpool.testing import run_cli


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ACCELPOOL_STATE_DIR", str(tmp_path / "state"))
    return dict(os.environ)


@pytest.mark.parametrize("preset", ["dgx-a100", "mixed"])
def test_fits_100_columns_with_readings(env: dict[str, str], preset: str) -> None:
    inv = accelpool.discover(sim=preset)
    for d in inv.devices():
        profiles = [p for p in d.profiles() if p.available]
        if profiles:
            d.create_partition(profiles[0].name)
    out = run_cli("--sim", preset, "ls", env=env)
    assert out.code == 0, out.err
    lines = out.out.splitlines()
    assert max(len(line) for line in lines) <= 100, out.out
    dev = inv.devices()[0]
    t = dev.telemetry()
    row = next(line for line in lines if f"| {dev.backend}:0 " in line)
    assert f"{t.temperature_c:.0f}C" in row
    assert f"/{dev.memory_bytes / 2**30:.1f}G" in row
    # Backends that are not part of the simulated fleet are not problems to report.
    assert "not part of simulated fleet" not in out.out + out.err
    assert "unavailable" not in out.out
    wide = run_cli("--sim", preset, "ls", "--wide", env=env)
    assert all(d.id in wide.out for d in inv.devices())


def test_mig_mode_and_partitions_are_shown(env: dict[str, str]) -> None:
    inv = accelpool.discover(sim="dgx-a100")
    part = inv.device("nvidia:0").create_partition("3g.20gb")
    out = run_cli("--sim", "dgx-a100", "ls", env=env).out
    row = next(line for line in out.splitlines() if "| nvidia:0 " in line)
    assert "| MIG " in row
    assert f"3g.20gb @{part.placement.start}" in out  # type: ignore[union-attr]
    assert "62W" in row


def test_a_held_session_shows_its_pid(env: dict[str, str]) -> None:
    inv = accelpool.discover(sim="dgx-a100")
    part = inv.device("nvidia:1").create_partition("1g.5gb")
    with accelpool.open_session(part, isolate=False):
        out = run_cli("--sim", "dgx-a100", "ls", env=env)
        doc = run_cli("--sim", "dgx-a100", "ls", "--json", env=env).json()
    assert f"pid {os.getpid()}" in out.out
    (gpu,) = [d for d in doc["devices"] if d["index"] == 1]
    (pj,) = gpu["partitions"]
    assert pj["holder"]["pid"] == os.getpid()
    assert gpu["holder"] is None


def test_json_keeps_its_shape_and_adds_readings_and_named_holders(env: dict[str, str]) -> None:
    inv = accelpool.discover(sim="dgx-a100")
    dev = inv.device("nvidia:2")
    claims.claim(dev, holder="k8s:abc", owner="pod default/llm-0")
    doc = run_cli("--sim", "dgx-a100", "ls", "--json", env=env).json()
    assert set(doc) == {"backends", "devices"}
    d = next(x for x in doc["devices"] if x["index"] == 2)
    for key in (
        "id",
        "backend",
        "index",
        "vendor",
        "model",
        "memory_bytes",
        "compute_units",
        "attributes",
        "partitions",
    ):
        assert key in d
    assert d["telemetry"]["temperature_c"] == dev.telemetry().temperature_c
    assert d["holder"]["holder"] == "k8s:abc"
    assert d["mode"] == "MIG"
    table = run_cli("--sim", "dgx-a100", "ls", env=env).out
    assert "k8s:abc (pod default" in table  # cut to fit 100 columns where needed


def test_lost_device_is_marked(env: dict[str, str]) -> None:
    inv = accelpool.discover(sim="dgx-a100")
    dev = inv.device("nvidia:3")
    dev.backend_instance.inject_fault("device-lost", dev.info)
    out = run_cli("--sim", "dgx-a100", "ls", env=env)
    row = next(line for line in out.out.splitlines() if "| nvidia:3 " in line)
    assert "[LOST]" in row and "nvidia:3 is lost" in out.out


def _watch(env: dict[str, str], stdout: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "accelpool", "--sim", "dgx-a100", "ls", "--watch", "0.2"],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
    )


def _read_until(fd: int, needle: bytes, count: int) -> bytes:
    seen, deadline = b"", time.monotonic() + 60
    while seen.count(needle) < count and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            seen += os.read(fd, 1 << 16)
    return seen


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)  # Ctrl-C while it waits to redraw: a clean exit
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_watch_redraws_in_place_on_a_terminal(env: dict[str, str]) -> None:
    leader, follower = pty.openpty()
    proc = _watch(env, follower)
    os.close(follower)
    try:
        seen = _read_until(leader, b"\x1b[H\x1b[J", 3)
        _interrupt(proc)
    finally:
        os.close(leader)
    assert seen.count(b"\x1b[H\x1b[J") >= 3 and b"nvidia:7" in seen


def test_watch_appends_plain_frames_to_a_pipe(env: dict[str, str]) -> None:
    proc = _watch(env, subprocess.PIPE)
    assert proc.stdout is not None
    seen = _read_until(proc.stdout.fileno(), b"every 0.2s", 3)
    _interrupt(proc)
    assert b"\x1b" not in seen  # no escape codes in a log file
    frames = [f for f in seen.decode().split("\n\n") if "every 0.2s" in f]
    assert len(frames) >= 3
    assert all(f.splitlines()[0].endswith("every 0.2s") for f in frames)
    assert "nvidia:7" in frames[0] and "nvidia:7" in frames[1]


@pytest.mark.parametrize("args", [["--watch", "0"], ["--watch", "nan"], ["--json", "--watch"]])
def test_watch_rejects_bad_use(env: dict[str, str], args: list[str]) -> None:
    out = run_cli("--sim", "dgx-a100", "ls", *args, env=env)
    assert out.code == 2 and len(out.err.strip().splitlines()) == 1, out.err
