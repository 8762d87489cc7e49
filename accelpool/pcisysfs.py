"""The kernel's PCI sysfs interface for handing a function to ``vfio-pci`` and back.

This is the code that runs on a real host with ``root="/"``; a simulated fleet runs the
same code on a tree laid out exactly like sysfs under its own folder, with
:class:`Kernel` playing the kernel's part after each write. The paths used, as the
kernel's VFIO documentation gives them:

* ``/sys/bus/pci/devices/<addr>`` (a link to the function's node under ``/sys/devices``)
  with ``driver`` (a link to ``/sys/bus/pci/drivers/<name>``; missing when unbound),
  ``driver_override`` (``(null)`` when unset) and ``iommu_group`` (a link to
  ``/sys/kernel/iommu_groups/<n>``, whose ``devices/`` lists every function of the group);
* ``/sys/bus/pci/drivers/<name>/unbind``, ``/sys/bus/pci/drivers/vfio-pci/bind`` and
  ``/sys/bus/pci/drivers_probe``, written with the function's address.

Paths are resolved here, one component at a time on directory descriptors opened with
``O_NOFOLLOW``: the operating system never follows a link. The kernel's own links
(``driver``, ``iommu_group``, the entries of ``bus/pci/devices``) are read with
``readlink`` and resolved by this module, and only when they are relative and stay
inside the tree; a link that points elsewhere, or an absolute one, is refused.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from accelpool.errors import InvalidRequest, PermissionDenied, UnsupportedOperation

__all__ = ["STUB_DRIVERS", "VFIO_DRIVER", "Kernel", "PassthroughInfo", "PciSysfs", "pci_address"]

VFIO_DRIVER = "vfio-pci"
#: drivers a group partner may be bound to for the group to be assigned (or none at all)
STUB_DRIVERS = (VFIO_DRIVER, "pci-stub", "vfio-pci-core")
_ADDR = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_MAX_LINKS = 16

#: What plays the kernel in a simulated tree: called with the written file's path
#: (components below the root, links resolved) and the text written.
Kernel = Callable[[tuple[str, ...], str], None]


@dataclass(frozen=True)
class PassthroughInfo:
    """What sysfs says about one PCI function (the value a backend reports)."""

    pci: str
    driver: str | None  # bound driver, None when unbound
    override: str | None  # driver_override, None when unset
    iommu_group: str | None
    #: other functions of the group still on a host driver: "0000:07:00.1 (snd_hda_intel)"
    group_blockers: tuple[str, ...] = ()

    @property
    def on_vfio(self) -> bool:
        return self.driver == VFIO_DRIVER


def pci_address(bus_id: str) -> str:
    """``00000000:07:00.0`` (NVML) or ``0000:07:00.0`` as sysfs spells it; checked."""
    try:
        dom, rest = bus_id.strip().split(":", 1)
        addr = f"{int(dom, 16):04x}:{rest.lower()}"
    except ValueError:
        addr = ""
    if not _ADDR.fullmatch(addr):
        raise InvalidRequest(f"{bus_id!r} is not a PCI address (DDDD:BB:SS.F)")
    return addr


class PciSysfs:
    """The PCI part of sysfs under ``root`` (``/`` on a real host: ``root/sys/...``)."""

    def __init__(self, root: Path | str = "/", kernel: Kernel | None = None) -> None:
        self.root = Path(root)
        self.kernel = kernel

    # -- safe resolution ------------------------------------------------------------
    def _open_root(self) -> int:
        try:
            return os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
        except OSError as e:
            raise UnsupportedOperation(f"no sysfs at {self.root}: {e.strerror}") from None

    def _walk(self, rel: str) -> tuple[int, tuple[str, ...]]:
        """An open descriptor of directory ``rel`` and its link-free path below the root."""
        stack = [self._open_root()]
        done: list[str] = []
        todo = [p for p in rel.split("/") if p not in ("", ".")]
        hops = 0
        try:
            while todo:
                name = todo.pop(0)
                if name == "..":
                    if not done:
                        raise PermissionDenied(f"a link under {self.root} leads out of the tree")
                    os.close(stack.pop())
                    done.pop()
                    continue
                try:
                    fd = os.open(name, _DIR, dir_fd=stack[-1])
                except FileNotFoundError:
                    raise InvalidRequest(f"{self._show(done, name)} does not exist") from None
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    target = self._link(stack[-1], done, name)
                    hops += 1
                    if hops > _MAX_LINKS:
                        raise PermissionDenied(
                            f"too many links at {self._show(done, name)}"
                        ) from None
                    # resolve the target from the root again, then the rest of the way
                    for fd in stack[1:]:
                        os.close(fd)
                    del stack[1:]
                    done.clear()
                    todo = list(target) + todo
                    continue
                stack.append(fd)
                done.append(name)
            fd = stack.pop()
            return fd, tuple(done)
        finally:
            for fd in stack:
                os.close(fd)

    def _show(self, *parts: str | list[str] | tuple[str, ...]) -> str:
        flat: list[str] = []
        for p in parts:
            flat += [p] if isinstance(p, str) else list(p)
        return str(self.root.joinpath(*[p for p in flat if p]))

    def _link(self, dfd: int, where: tuple[str, ...] | list[str], name: str) -> tuple[str, ...]:
        """Where link ``name`` in directory ``where`` points, resolved inside the tree."""
        try:
            text = os.readlink(name, dir_fd=dfd)
        except OSError as e:
            raise PermissionDenied(f"{self._show(where, name)} is not a link: {e}") from None
        if text.startswith("/"):
            raise PermissionDenied(
                f"{self._show(where, name)} is an absolute link ({text}); sysfs links are "
                "relative, so it is refused, not followed"
            )
        out = list(where)
        for part in text.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not out:
                    raise PermissionDenied(
                        f"{self._show(where, name)} points out of the tree ({text}); refused"
                    )
                out.pop()
            else:
                out.append(part)
        return tuple(out)

    def _read(self, rel: str, name: str) -> str | None:
        fd, where = self._walk(rel)
        try:
            f = os.open(name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise PermissionDenied(f"{self._show(where, name)} is a link; refused") from None
            raise
        finally:
            os.close(fd)
        with os.fdopen(f, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise PermissionDenied(f"{self._show(where, name)} is not a regular file")
            return fh.read(4096).decode(errors="replace").strip()

    def _readlink(self, rel: str, name: str) -> tuple[str, ...] | None:
        fd, where = self._walk(rel)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        else:
            if not stat.S_ISLNK(st.st_mode):
                raise PermissionDenied(f"{self._show(where, name)} is not a link; refused")
            return self._link(fd, where, name)
        finally:
            os.close(fd)

    def _write(self, rel: str, name: str, text: str) -> None:
        """One ``write()`` to an existing attribute, as the kernel expects; never created."""
        fd, where = self._walk(rel)
        try:
            try:
                f = os.open(name, os.O_WRONLY | os.O_TRUNC | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                raise InvalidRequest(f"{self._show(where, name)} does not exist") from None
            except PermissionError:
                raise PermissionDenied(
                    f"cannot write {self._show(where, name)}: permission denied (needs root)"
                ) from None
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise PermissionDenied(
                        f"{self._show(where, name)} is a link; refused"
                    ) from None
                raise
            try:
                if not stat.S_ISREG(os.fstat(f).st_mode):
                    raise PermissionDenied(f"{self._show(where, name)} is not a regular file")
                os.write(f, text.encode())
            except OSError as e:  # the kernel refuses a write with an errno
                raise InvalidRequest(
                    f"the kernel refused {text!r} written to {self._show(where, name)}: "
                    f"{e.strerror}"
                ) from None
            finally:
                os.close(f)
        finally:
            os.close(fd)
        if self.kernel is not None:
            self.kernel((*where, name), text)

    # -- facts --------------------------------------------------------------------------
    def _dev(self, pci: str) -> str:
        return f"sys/bus/pci/devices/{pci_address(pci)}"

    def driver(self, pci: str) -> str | None:
        """The driver ``pci`` is bound to: the last part of its ``driver`` link, checked."""
        target = self._readlink(self._dev(pci), "driver")
        if target is None:
            return None
        if len(target) != 5 or target[:4] != ("sys", "bus", "pci", "drivers"):
            raise PermissionDenied(
                f"{self._show(self._dev(pci), 'driver')} points to "
                f"{'/'.join(target)}, not to a driver under sys/bus/pci/drivers; refused"
            )
        return target[4]

    def exists(self, pci: str) -> bool:
        try:
            fd, _ = self._walk(self._dev(pci))
        except InvalidRequest:
            return False
        os.close(fd)
        return True

    def group(self, pci: str) -> tuple[str | None, list[str]]:
        """The IOMMU group number of ``pci`` and every function in it (``pci`` too)."""
        target = self._readlink(self._dev(pci), "iommu_group")
        if target is None:
            return None, [pci]
        if len(target) != 4 or target[:3] != ("sys", "kernel", "iommu_groups"):
            raise PermissionDenied(f"the iommu_group link of {pci} points outside sys/kernel")
        fd, _ = self._walk("/".join(target) + "/devices")
        try:
            members = sorted(n for n in os.listdir(fd) if _ADDR.fullmatch(n))
        finally:
            os.close(fd)
        return target[3], members

    def info(self, pci: str) -> PassthroughInfo:
        pci = pci_address(pci)
        if not self.exists(pci):
            raise InvalidRequest(f"no PCI function {pci} in {self._show('sys/bus/pci/devices')}")
        override = self._read(self._dev(pci), "driver_override")
        group, members = self.group(pci)
        blockers = []
        for other in members:
            if other != pci:
                drv = self.driver(other)
                if drv is not None and drv not in STUB_DRIVERS:
                    blockers.append(f"{other} ({drv})")
        return PassthroughInfo(
            pci,
            self.driver(pci),
            None if override in (None, "", "(null)") else override,
            group,
            tuple(blockers),
        )

    # -- the kernel's steps ----------------------------------------------------------------
    def set_override(self, pci: str, driver: str | None) -> None:
        # writing a newline alone clears the override
        self._write(self._dev(pci), "driver_override", (driver or "") + "\n")

    def unbind_driver(self, pci: str) -> None:
        drv = self.driver(pci)
        if drv is not None:
            self._write(f"sys/bus/pci/drivers/{drv}", "unbind", pci_address(pci))

    def probe(self, pci: str) -> None:
        self._write("sys/bus/pci", "drivers_probe", pci_address(pci))

    def vfio_loaded(self) -> bool:
        try:
            fd, _ = self._walk(f"sys/bus/pci/drivers/{VFIO_DRIVER}")
        except InvalidRequest:
            return False
        os.close(fd)
        return True
