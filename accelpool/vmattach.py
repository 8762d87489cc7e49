"""Attach a device or vGPU to a libvirt domain and detach it, holding a claim per domain.

Uses the ``libvirt`` Python binding (``pip install 'accelpool[vm]'``). Live attach
(``attachDeviceFlags``) where the hypervisor can; otherwise the device is added to the
persistent definition (``defineXML``), as on libvirt's ``test:///default`` driver.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from accelpool.errors import BackendUnavailable, InvalidRequest, NotFound

__all__ = ["attach", "detach", "holder_of"]


def holder_of(domain: str) -> str:
    return "vm:" + domain


def _libvirt() -> Any:
    try:
        import libvirt
    except ImportError:
        raise BackendUnavailable(
            "the libvirt Python binding is not installed: pip install 'accelpool[vm]' "
            "(needs libvirt-dev and pkg-config to build)"
        ) from None
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are raised, not printed
    return libvirt


def _domain(conn: Any, name: str) -> Any:
    lv = _libvirt()
    try:
        return conn.lookupByName(name)
    except lv.libvirtError as e:
        raise NotFound(f"no libvirt domain {name!r}: {e}") from None


def _same(a: ET.Element, b: ET.Element) -> bool:
    sa, sb = a.find("source/address"), b.find("source/address")
    return (
        a.get("type") == b.get("type")
        and sa is not None
        and sb is not None
        and (sa.attrib == sb.attrib)
    )


def attach(target: Any, domain: str, uri: str | None = None) -> str:
    """Attach ``target`` to ``domain``; ``"live"`` or ``"persistent"``."""
    from accelpool import claims
    from accelpool.vmxml import hostdev_xml

    xml = hostdev_xml(target)
    lv = _libvirt()
    conn = lv.open(uri)
    try:
        dom = _domain(conn, domain)
        _swap_to_vm(target, domain)
        c = claims.claim(target, holder=holder_of(domain), owner=f"libvirt domain {domain}")
        try:
            if dom.isActive():
                try:
                    dom.attachDeviceFlags(
                        xml, lv.VIR_DOMAIN_AFFECT_LIVE | lv.VIR_DOMAIN_AFFECT_CONFIG
                    )
                    return "live"
                except lv.libvirtError as e:
                    if e.get_error_code() != lv.VIR_ERR_NO_SUPPORT:
                        raise InvalidRequest(f"libvirt refused the attach: {e}") from None
            root = ET.fromstring(dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE))
            devices = root.find("devices")
            assert devices is not None
            new = ET.fromstring(xml)
            if not any(_same(h, new) for h in devices.findall("hostdev")):
                devices.append(new)
            conn.defineXML(ET.tostring(root, encoding="unicode"))
            return "persistent"
        except BaseException:
            claims.release(c)
            raise
    finally:
        conn.close()


def detach(target: Any, domain: str, uri: str | None = None) -> str:
    """Remove ``target`` from ``domain`` and release the domain's claim on it."""
    from accelpool import claims
    from accelpool.vmxml import hostdev_xml

    lv = _libvirt()
    conn = lv.open(uri)
    try:
        dom = _domain(conn, domain)
        new = ET.fromstring(hostdev_xml(target))
        root = ET.fromstring(dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE))
        devices = root.find("devices")
        assert devices is not None
        gone = [h for h in devices.findall("hostdev") if _same(h, new)]
        for h in gone:
            devices.remove(h)
        if gone:
            conn.defineXML(ET.tostring(root, encoding="unicode"))
        claims.release(holder_of(domain), target=target.id)
        _swap_back(target)
        return "detached" if gone else "not attached"
    finally:
        conn.close()


def _swap_to_vm(target: Any, domain: str) -> None:
    """A passed-through device's vfio claim becomes the domain's claim."""
    from accelpool import claims, vfio
    from accelpool.inventory import Device

    if not isinstance(target, Device):
        return
    if not vfio.state(target).passed_through:
        raise InvalidRequest(
            f"{target.id} is not bound to vfio-pci: run 'accelpool vfio bind {target.id}' first"
        )
    c = claims.lookup(target)
    if c is not None and c.holder == holder_of(domain):
        return
    claims.release(vfio.holder_of(target.id))


def _swap_back(target: Any) -> None:
    from accelpool import claims, vfio
    from accelpool.inventory import Device

    if isinstance(target, Device) and claims.lookup(target) is None:
        st = vfio.state(target)
        if st.driver == vfio.VFIO_DRIVER:
            host = st.host_driver or "none"
            claims.claim(
                target,
                holder=vfio.holder_of(target.id),
                owner=f"passed through to vfio-pci (host driver {host})",
            )
