"""The real-host passthrough path (root "/") on a temp tree laid out like a host's /sys.

The tree is made here by hand, as the kernel lays it out (a bridge level under
sys/devices, relative links for bus/pci/devices, driver and iommu_group, the GPU's HDMI
audio function in its IOMMU group); SimPciKernel only plays the kernel's part after
each write. PciSysfs and the default sysfs steps are the code a real host runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from accelpool import InUse, InvalidRequest, PermissionDenied, UnsupportedOperation
from accelpool.pcisysfs import PciSysfs
from accelpool.sim.pcikernel import SimPciKernel
from accelpool.vfio import sysfs_bind, sysfs_unbind

GPU, AUDIO = "0000:07:00.0", "0000:07:00.1"
NODE = "sys/devices/pci0000:00/0000:00:03.1"


def host_tree(root: Path, vfio_loaded: bool = True) -> None:
    """A host's /sys as the kernel shows it, for one GPU and its audio function."""
    (root / "sys/bus/pci/devices").mkdir(parents=True)
    (root / "sys/bus/pci/drivers_probe").write_text("")
    drivers = ["nvidia", "snd_hda_intel"] + (["vfio-pci"] if vfio_loaded else [])
    for drv in drivers:
        d = root / "sys/bus/pci/drivers" / drv
        d.mkdir(parents=True)
        for attr in ("bind", "unbind", "new_id", "remove_id"):
            (d / attr).write_text("")
    group = root / "sys/kernel/iommu_groups/12/devices"
    group.mkdir(parents=True)
    for addr, drv in ((GPU, "nvidia"), (AUDIO, "snd_hda_intel")):
        node = root / NODE / addr
        node.mkdir(parents=True)
        (node / "driver_override").write_text("(null)\n")
        (node / "vendor").write_text("0x10de\n")
        os.symlink(f"../../../../bus/pci/drivers/{drv}", node / "driver")
        os.symlink("../../../../kernel/iommu_groups/12", node / "iommu_group")
        os.symlink(
            f"../../../devices/pci0000:00/0000:00:03.1/{addr}", root / "sys/bus/pci/devices" / addr
        )
        os.symlink(f"../../../../devices/pci0000:00/0000:00:03.1/{addr}", group / addr)
        os.symlink(
            f"../../../../devices/pci0000:00/0000:00:03.1/{addr}",
            root / "sys/bus/pci/drivers" / drv / addr,
        )


def sysfs(root: Path) -> PciSysfs:
    kernel = SimPciKernel(root, native={GPU: "nvidia", AUDIO: "snd_hda_intel"})
    return PciSysfs(root, kernel=kernel)


def test_bind_unbind_on_a_host_layout(tmp_path: Path) -> None:
    host_tree(tmp_path)
    fs = sysfs(tmp_path)
    info = fs.info(GPU)
    assert (info.driver, info.override, info.iommu_group) == ("nvidia", None, "12")
    assert info.group_blockers == (f"{AUDIO} (snd_hda_intel)",)
    with pytest.raises(InUse, match=rf"group 12 member {AUDIO} \(snd_hda_intel\)"):
        sysfs_bind(fs, GPU)
    assert (tmp_path / NODE / GPU / "driver_override").read_text() == "(null)\n"  # untouched
    fs.unbind_driver(AUDIO)  # the admin unbinds the audio function: the group is viable
    after = sysfs_bind(fs, GPU)
    assert (after.driver, after.override) == ("vfio-pci", "vfio-pci")
    link = os.readlink(tmp_path / NODE / GPU / "driver")
    assert link == "../../../../bus/pci/drivers/vfio-pci"
    assert (tmp_path / "sys/bus/pci/drivers/vfio-pci" / GPU).is_symlink()
    assert not (tmp_path / "sys/bus/pci/drivers/nvidia" / GPU).exists()
    assert sysfs_bind(fs, GPU) == after  # idempotent
    back = sysfs_unbind(fs, GPU)
    assert (back.driver, back.override) == ("nvidia", None)
    assert (tmp_path / NODE / GPU / "driver_override").read_text() == "(null)\n"


def test_vfio_pci_not_loaded(tmp_path: Path) -> None:
    host_tree(tmp_path, vfio_loaded=False)
    fs = sysfs(tmp_path)
    fs.unbind_driver(AUDIO)
    with pytest.raises(UnsupportedOperation, match="modprobe vfio-pci"):
        sysfs_bind(fs, GPU)


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("/etc", "absolute link"),
        ("../../../../../../../../../etc", "out of the tree"),
        ("../../../../class/net/eth0", "not to a driver"),
    ],
)
def test_driver_links_that_leave_the_drivers_are_refused(
    tmp_path: Path, target: str, why: str
) -> None:
    host_tree(tmp_path)
    link = tmp_path / NODE / GPU / "driver"
    link.unlink()
    os.symlink(target, link)
    with pytest.raises(PermissionDenied, match=why):
        sysfs(tmp_path).info(GPU)


def test_attribute_replaced_by_a_link_is_not_written_through(tmp_path: Path) -> None:
    host_tree(tmp_path / "host")
    outside = tmp_path / "precious"
    outside.write_text("keep me\n")
    attr = tmp_path / "host" / NODE / GPU / "driver_override"
    attr.unlink()
    os.symlink(outside, attr)
    fs = sysfs(tmp_path / "host")
    with pytest.raises(PermissionDenied, match="is a link; refused"):
        fs.set_override(GPU, "vfio-pci")
    assert outside.read_text() == "keep me\n"
    # a device entry that leads out of the tree is not followed either
    entry = tmp_path / "host/sys/bus/pci/devices" / AUDIO
    entry.unlink()
    os.symlink("../../../../..", entry)
    with pytest.raises(PermissionDenied, match="out of the tree"):
        fs.info(AUDIO)


def test_bad_addresses(tmp_path: Path) -> None:
    host_tree(tmp_path)
    fs = sysfs(tmp_path)
    with pytest.raises(InvalidRequest, match="not a PCI address"):
        fs.info("../../etc")
    with pytest.raises(InvalidRequest, match=r"no PCI function 0000:08:00\.0"):
        fs.info("0000:08:00.0")
