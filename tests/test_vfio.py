"""Whole-device passthrough on a simulated fleet, and the libvirt hostdev XML."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import accelpool
from accelpool.cli.app import main


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("ACCELPOOL_STATE_DIR", str(d))
    monkeypatch.delenv("ACCELPOOL_SIM", raising=False)
    return d


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["--sim", "vgpu-host", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def vstatus(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    rc, out, _ = cli(capsys, "vfio", "status", "--json")
    assert rc == 0
    return json.loads(out)


def test_bind_unbind_round_trip_and_refusals(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vstatus(capsys)[0]["driver"] == "nvidia"
    rc, out, err = cli(capsys, "vfio", "bind", "nvidia:0", "--json")
    assert rc == 0, err
    assert json.loads(out)[0]["driver"] == "vfio-pci"
    rc, out, _ = cli(capsys, "ls")
    assert "passed through (vfio-pci)" in out
    rc, out, _ = cli(capsys, "ls", "--json")
    assert [d["passed_through"] for d in json.loads(out)["devices"]] == [True, False]
    rc, _, err = cli(capsys, "partition", "create", "nvidia:0", "A100X-4C")
    assert rc == 1 and "passed through to vfio-pci" in err and "vfio unbind" in err
    assert len(err.strip().splitlines()) == 1
    with accelpool.discover(sim="vgpu-host") as inv, pytest.raises(accelpool.InUse, match="vfio:"):
        accelpool.open_session(inv.device("nvidia:0"), isolate=False).__enter__()
    rc, out, err = cli(capsys, "vfio", "unbind", "nvidia:0", "--json")
    assert rc == 0, err
    assert json.loads(out)[0]["driver"] == "nvidia"
    rc, _, err = cli(capsys, "partition", "create", "nvidia:0", "A100X-4C")
    assert rc == 0, err
    rc, _, err = cli(capsys, "vfio", "bind", "nvidia:0")
    assert rc == 1 and "partition(s)" in err


def test_claimed_device_and_group_partner_are_refused(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from accelpool import claims
    from accelpool.pcisysfs import PciSysfs
    from accelpool.sim.pcikernel import SimPciKernel

    with accelpool.discover(sim="vgpu-host") as inv:
        dev = inv.device("nvidia:1")
        claims.claim(dev, holder="k8s:abc", owner="pod x")
        root = dev.backend_instance.context.sim.root
    rc, _, err = cli(capsys, "vfio", "bind", "nvidia:1")
    assert rc == 1 and "k8s:abc" in err and len(err.strip().splitlines()) == 1
    group = vstatus(capsys)[0]["iommu_group"]
    # the GPU's HDMI audio function joins its IOMMU group, on a host driver
    SimPciKernel(root / "host").add_function("0000:07:00.1", "snd_hda_intel", group=int(group))
    rc, out, _ = cli(capsys, "vfio", "status")
    assert "0000:07:00.1 (snd_hda_intel)" in out
    rc, _, err = cli(capsys, "vfio", "bind", "nvidia:0")
    assert rc == 1 and "0000:07:00.1" in err and "snd_hda_intel" in err
    assert vstatus(capsys)[0]["driver"] == "nvidia"  # nothing was done
    host = root / "host"  # the admin unbinds the audio function
    PciSysfs(host, kernel=SimPciKernel(host)).unbind_driver("0000:07:00.1")
    rc, _, err = cli(capsys, "vfio", "bind", "nvidia:0")
    assert rc == 0, err
    assert vstatus(capsys)[0]["passed_through"] is True


def test_device_with_processes_is_refused(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        dev = inv.device("nvidia:2")
        sim = dev.backend_instance.simulator  # type: ignore[attr-defined]
        pid = sim.add_process(dev.info.native_id)
        assert dev.backend_instance.device_processes(dev.info) == [pid]  # through NVML
    rc = main(["--sim", "dgx-a100", "vfio", "bind", "nvidia:2"])
    _, err = capsys.readouterr()
    assert rc == 1 and f"process(es) {pid} use it" in err
    sim.remove_process(pid)
    assert main(["--sim", "dgx-a100", "vfio", "bind", "nvidia:2"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("step", "then"),
    [("claim", "bind"), ("driver_override", "unbind"), ("unbind", "bind"), ("probe", "unbind")],
)
def test_kill_midway_is_reported_and_completed(
    state: Path, capsys: pytest.CaptureFixture[str], step: str, then: str
) -> None:
    env = dict(os.environ, ACCELPOOL_VFIO_DIE_AFTER=step)
    p = subprocess.run(
        [sys.executable, "-m", "accelpool", "--sim", "vgpu-host", "vfio", "bind", "nvidia:0"],
        env=env,
        capture_output=True,
        timeout=20,
    )
    assert p.returncode == -9, p.stderr
    st = vstatus(capsys)[0]
    assert st["pending"] == "bind" and st["passed_through"] is False
    rc, out, _ = cli(capsys, "vfio", "status")
    assert "pending bind" in out
    rc, _, err = cli(capsys, "partition", "create", "nvidia:0", "A100X-4C")
    assert rc == 1 and "vfio unbind" in err  # the half-bound device is still held
    rc, out, err = cli(capsys, "vfio", then, "nvidia:0", "--json")
    assert rc == 0, err
    st = json.loads(out)[0]
    assert st["pending"] is None
    if then == "bind":
        assert st["driver"] == "vfio-pci" and st["passed_through"] is True
        assert cli(capsys, "vfio", "unbind", "nvidia:0")[0] == 0
    else:
        assert st["driver"] == "nvidia" and st["override"] is None and st["holder"] is None
    rc, _, err = cli(capsys, "partition", "create", "nvidia:0", "A100X-4C")
    assert rc == 0, err


DOMAIN = """<domain type='kvm'>
  <name>vm1</name>
  <memory unit='KiB'>1048576</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
{hostdev}
  </devices>
</domain>
"""


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="libvirt-clients missing")
def test_hostdev_xml_validates(
    state: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rc, pci_xml, err = cli(capsys, "vm", "hostdev", "nvidia:0")
    assert rc == 0, err
    assert "type='pci'" in pci_xml
    rc, out, err = cli(capsys, "partition", "create", "nvidia:1", "A100X-4C", "--json")
    assert rc == 0, err
    rc, mdev_xml, err = cli(capsys, "vm", "hostdev", json.loads(out)["id"])
    assert rc == 0, err
    assert "type='mdev'" in mdev_xml and "uuid=" in mdev_xml
    for i, x in enumerate((pci_xml, mdev_xml)):
        f = tmp_path / f"d{i}.xml"
        f.write_text(DOMAIN.format(hostdev=x))
        p = subprocess.run(["virt-xml-validate", str(f), "domain"], capture_output=True, timeout=20)
        assert p.returncode == 0, p.stderr + p.stdout


def test_attach_detach_on_libvirt_test_driver(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    libvirt = pytest.importorskip("libvirt", reason="libvirt binding not built (accelpool[vm])")
    uri = "test:///default"
    conn = libvirt.open(uri)  # the test driver keeps its state while a connection is open
    rc, _, err = cli(capsys, "vm", "hostdev", "nvidia:0", "--domain", "test", "--connect", uri)
    assert rc == 1 and "vfio bind" in err
    assert cli(capsys, "vfio", "bind", "nvidia:0")[0] == 0
    rc, out, err = cli(capsys, "vm", "hostdev", "nvidia:0", "--domain", "test", "--connect", uri)
    assert rc == 0 and "persistent" in out, err
    xml = conn.lookupByName("test").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "bus='0x07'" in xml
    rc, out, _ = cli(capsys, "ls")
    assert "VM test (vfio-pci)" in out
    rc, _, err = cli(capsys, "vfio", "unbind", "nvidia:0")
    assert rc == 1 and "vm detach" in err
    rc, out, err = cli(capsys, "vm", "detach", "nvidia:0", "--domain", "test", "--connect", uri)
    assert rc == 0 and "detached" in out, err
    xml = conn.lookupByName("test").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "bus='0x07'" not in xml
    assert cli(capsys, "vfio", "unbind", "nvidia:0")[0] == 0


def test_planted_links_in_the_fleet_tree_are_not_followed(
    state: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with accelpool.discover(sim="vgpu-host") as inv:
        root = inv.device("nvidia:0").backend_instance.context.sim.root
    vstatus(capsys)  # makes the tree
    node = root / "host/sys/devices/pci0000:00/0000:07:00.0"
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    (node / "driver_override").unlink()
    (node / "driver_override").symlink_to(precious)
    rc, _, err = cli(capsys, "vfio", "bind", "nvidia:0")
    assert rc == 1 and "is a link; refused" in err and len(err.strip().splitlines()) == 1
    assert precious.read_text() == "keep me\n"
    (node / "driver_override").unlink()
    (node / "driver_override").write_text("(null)\n")
    (node / "driver").unlink()
    (node / "driver").symlink_to("/etc")
    rc, _, err = cli(capsys, "vfio", "status")
    assert rc == 1 and "absolute link" in err
