"""CDI specs (and slices) follow partitions made or destroyed outside the driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from accelpool_kubernetes.cdi import spec_problems
from accelpool_kubernetes.sync import sync_specs

import accelpool


def accelpool_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accelpool", *args], capture_output=True, text=True, timeout=60
    )


def names(path: Path) -> list[str]:
    return [d["name"] for d in json.loads(path.read_text())["devices"]]


def test_specs_follow_partitions_made_through_the_library(tmp_path: Path) -> None:
    cdi = tmp_path / "cdi"
    spec = cdi / "accelpool.dev-nvidia.json"
    with accelpool.discover(sim="dgx-a100") as inv:
        # MIG-enabled GPUs with no MIG device: nothing a container can use yet
        assert sync_specs(inv, "accelpool.dev", cdi) == {}
        part = inv.device("nvidia:0").create_partition("3g.20gb", placement=4)
        assert sync_specs(inv, "accelpool.dev", cdi) == {spec: "written"}
        data = json.loads(spec.read_text())
        assert spec_problems(data) == []
        (mig,) = [d for d in data["devices"] if d["name"] == "nvidia-0-mig-3g20gb-4"]
        assert len(mig["containerEdits"]["deviceNodes"]) == 3
        assert mig["containerEdits"]["env"] == [f"CUDA_VISIBLE_DEVICES={part.info.native_id}"]
        assert sync_specs(inv, "accelpool.dev", cdi) == {}  # nothing changed, nothing written
        inv.device("nvidia:1").create_partition("1g.5gb", placement=0)
        part.destroy()
        assert sync_specs(inv, "accelpool.dev", cdi) == {spec: "written"}
        assert names(spec) == ["nvidia-1-mig-1g5gb-0"]


def test_cdi_command_reflects_the_cli_and_removes_stale_specs(tmp_path: Path) -> None:
    cdi = tmp_path / "cdi"
    cdi.mkdir()
    stale = cdi / "accelpool.dev-ascend.json"  # a backend no longer on this host
    stale.write_text("{}")
    other = cdi / "nvidia.com-gpu.json"  # someone else's spec is left alone
    other.write_text("{}")
    sim = ["--sim", "mlu370-x8"]
    made = accelpool_cli(*sim, "partition", "create", "cambricon:0", "2m.8gb", "--json")
    assert made.returncode == 0, made.stderr
    out = accelpool_cli(*sim, "k8s", "cdi", "--dir", str(cdi))
    assert out.returncode == 0, out.stderr
    spec = cdi / "accelpool.dev-cambricon.json"
    assert out.stdout.splitlines() == [f"removed {stale}", str(spec)]
    assert not stale.exists() and other.exists()
    assert any(n.startswith("cambricon-0-mim-2m8gb-") for n in names(spec))
    bad = accelpool_cli(*sim, "k8s", "cdi", "--watch", "1")
    assert bad.returncode == 1 and "--watch needs --dir" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def _wait(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "the plugin did not catch up"
        time.sleep(0.1)


def test_kubelet_plugin_loop_regenerates_specs_and_slices(tmp_path: Path) -> None:
    """A partition made by another process while the plugin runs shows in its CDI spec
    and its published slices within a resync interval; so does its destruction."""
    sockets = Path(tempfile.mkdtemp(prefix="k8s"))
    cdi, slices = tmp_path / "cdi", tmp_path / "slices.yaml"
    (tmp_path / "claims").mkdir()
    env = dict(os.environ, ACCELPOOL_SIM="dgx-a100")
    args = ["--no-publish", "--slices-file", str(slices), "--claims-dir", str(tmp_path / "claims")]
    args += ["--cdi-dir", str(cdi), "--plugin-dir", str(sockets), "--registrar-dir", str(sockets)]
    args += ["--resync-interval", "1"]
    plugin = subprocess.Popen(
        [sys.executable, "-m", "accelpool", "k8s", "kubelet-plugin", "--node", "n1", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    spec = cdi / "accelpool.dev-nvidia.json"

    def published() -> set[str]:
        try:
            docs = list(yaml.safe_load_all(slices.read_text()))
        except (OSError, yaml.YAMLError):
            return set()
        return {d["name"] for s in docs for d in s["spec"].get("devices") or []}

    try:
        _wait(lambda: "nvidia-1-mig-7g40gb-0" in published())
        made = accelpool_cli(
            "--sim", "dgx-a100", "partition", "create", "nvidia:1", "2g.10gb", "--placement", "0"
        )
        assert made.returncode == 0, made.stderr
        _wait(lambda: spec.exists() and "nvidia-1-mig-2g10gb-0" in names(spec))
        _wait(lambda: "nvidia-1-mig-7g40gb-0" not in published())
        assert "nvidia-1-mig-2g10gb-0" in published()
        with accelpool.discover(sim="dgx-a100") as inv:
            (part,) = inv.device("nvidia:1").partitions()
            part.destroy()
        _wait(lambda: not spec.exists())  # no container-usable device left
        _wait(lambda: "nvidia-1-mig-7g40gb-0" in published())
    finally:
        plugin.send_signal(signal.SIGTERM)
        _, err = plugin.communicate(timeout=30)
    assert plugin.returncode == 0, err
    assert not (sockets / "dra.sock").exists()
