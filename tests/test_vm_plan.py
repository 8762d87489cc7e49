"""``vm plan`` counts, checked against creating the vGPUs and binding the devices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accelpool.cli.app import main

FLAVOURS = """
[[flavour]]
name = "small"
vgpu = "A100X-5C"
count = 2

[[flavour]]
name = "whole"
gpus = 1

[[flavour]]
name = "pair"
gpus = 2

[[flavour]]
name = "big"
vgpu = "A100X-20C"
"""


@pytest.fixture
def flavours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ACCELPOOL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ACCELPOOL_SIM", raising=False)
    f = tmp_path / "flavours.toml"
    f.write_text(FLAVOURS)
    return str(f)


def run(capsys: pytest.CaptureFixture[str], fleet: str, *argv: str) -> tuple[int, str, str]:
    rc = main(["--sim", fleet, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def plan(capsys: pytest.CaptureFixture[str], fleet: str, path: str) -> dict[str, dict]:
    rc, out, err = run(capsys, fleet, "vm", "plan", path, "--json")
    assert rc == 0, err
    return {r["flavour"]: r for r in json.loads(out)}


def fill(capsys: pytest.CaptureFixture[str], fleet: str, dev: str, profile: str) -> list[str]:
    """Create ``profile`` on ``dev`` until the backend refuses; the partition ids."""
    made = []
    while True:
        rc, out, err = run(capsys, fleet, "partition", "create", dev, profile, "--json")
        if rc != 0:
            assert "InsufficientCapacity" in err, err
            return made
        made.append(json.loads(out)["id"])


def test_vgpu_host_counts_match_creating_them(
    flavours: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = "vgpu-host"
    run(capsys, fleet, "partition", "create", "nvidia:0", "A100X-5C")  # one already there
    p = plan(capsys, fleet, flavours)
    assert p["small"]["devices"] == {"nvidia:0": 7, "nvidia:1": 8}
    assert p["small"]["vms"] == 7  # 15 instances, 2 per VM
    assert p["big"]["devices"] == {"nvidia:1": 2}  # a GPU runs one time-sliced type
    assert (p["whole"]["vms"], p["pair"]["vms"]) == (1, 0)
    assert p["pair"]["reason"] == "1 device(s) free for passthrough, 2 per VM"
    made = {dev: len(fill(capsys, fleet, dev, "A100X-5C")) for dev in ("nvidia:0", "nvidia:1")}
    assert made == p["small"]["devices"]
    run(capsys, fleet, "sim", "reset")
    assert len(fill(capsys, fleet, "nvidia:0", "A100X-20C")) == 2
    for r in plan(capsys, fleet, flavours).values():
        assert "nvidia:0" not in r["devices"]  # full: neither vGPUs nor passthrough


def test_dgx_a100_counts_match_binding_them(
    flavours: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = "dgx-a100"
    assert run(capsys, fleet, "partition", "create", "nvidia:3", "3g.20gb")[0] == 0
    assert run(capsys, fleet, "vfio", "bind", "nvidia:5")[0] == 0  # bound, no VM: still free
    p = plan(capsys, fleet, flavours)
    assert (p["whole"]["vms"], p["pair"]["vms"]) == (7, 3)
    assert "nvidia:3" not in p["whole"]["devices"] and "nvidia:5" in p["whole"]["devices"]
    assert p["small"]["vms"] == 0 and "vGPU mode" in p["small"]["reason"]
    for dev in p["whole"]["devices"]:
        rc, _, err = run(capsys, fleet, "vfio", "bind", dev)
        assert rc == 0, err
    rc, _, err = run(capsys, fleet, "vfio", "bind", "nvidia:3")
    assert rc == 1 and "partition(s)" in err
    rc, out, _ = run(capsys, fleet, "vm", "plan", flavours)
    assert rc == 0 and "whole" in out


def test_a_mig_profile_is_not_a_vm_flavour(
    flavours: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[flavour]]\nname = "m"\nvgpu = "3g.20gb"\n')
    rc, _, err = run(capsys, "dgx-a100", "vm", "plan", str(bad))
    assert rc == 1 and "is a mig profile" in err and len(err.strip().splitlines()) == 1
    bad.write_text('[[flavour]]\nname = "m"\ngpus = 0\n')
    rc, _, err = run(capsys, "dgx-a100", "vm", "plan", str(bad))
    assert rc == 1 and "gpus must be" in err


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"\xff\xfe[[flavour]]\n", "is not UTF-8 text"), (b"[[flavour]\n", "is not valid TOML")],
)
def test_a_flavours_file_that_cannot_be_read_is_one_line(
    flavours: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, says: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(content)
    rc, _, err = run(capsys, "vgpu-host", "vm", "plan", str(bad))
    assert rc == 1 and f"flavours file {bad} {says}" in err, err
    assert len(err.strip().splitlines()) == 1
