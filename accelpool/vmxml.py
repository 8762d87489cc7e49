"""libvirt ``<hostdev>`` XML for a passthrough device or a vGPU (mdev) instance."""

from __future__ import annotations

import re
from typing import Any

from accelpool.errors import InvalidRequest

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def hostdev_xml(target: Any, *, managed: bool | None = None) -> str:
    """The ``<hostdev>`` element attaching ``target`` (a Device or a vGPU Partition)."""
    from accelpool.inventory import Device

    if isinstance(target, Device):
        from accelpool import vfio

        pci = vfio.pci_of(target)
        dom, bus, rest = pci.split(":")
        slot, fn = rest.split(".")
        if managed is None:
            managed = not vfio.state(target).passed_through
        return (
            f"<hostdev mode='subsystem' type='pci' managed='{'yes' if managed else 'no'}'>\n"
            f"  <source>\n"
            f"    <address domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/>\n"
            f"  </source>\n"
            f"</hostdev>"
        )
    if target.kind != "vgpu":
        raise InvalidRequest(
            f"{target.id} is a {target.kind} partition: only whole devices and vGPU "
            "instances can be handed to a VM"
        )
    m = _UUID.search(target.id)
    if m is None:
        raise InvalidRequest(f"{target.id} names no mdev UUID")
    return (
        "<hostdev mode='subsystem' type='mdev' model='vfio-pci'>\n"
        "  <source>\n"
        f"    <address uuid='{m.group(0).lower()}'/>\n"
        "  </source>\n"
        "</hostdev>"
    )
