"""Reading layouts: accelpool's TOML layout files and mig-parted's ``mig-configs`` YAML.

Both become a list of :class:`Entry`: which devices (a selector), which partitions
(profile -> count, or None to leave partitions alone) and which MIG mode (True, False,
or None: whatever the partitions need).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelpool.errors import InvalidRequest

if TYPE_CHECKING:
    from accelpool.inventory import Device

#: The largest layout or config file read: these are a few hundred lines at most.
MAX_FILE_BYTES = 1 << 20
PCI_ID_ATTR = "nvidia.com/pciDeviceID"


@dataclass(frozen=True)
class Entry:
    """One table of a layout: the devices it selects and what they should hold."""

    select: Any = "all"  # "all", an index, a list of them, a device id or BACKEND:INDEX
    model: str | None = None  # a substring of the model name
    pci_ids: tuple[str, ...] = ()  # mig-parted's device-filter: PCI device ids
    host: str | None = None  # only on this host of a multi-host layout
    partitions: dict[str, int] | None = None
    mig: bool | None = None

    def matches(self, d: Device, host: str | None = None) -> bool:
        """Whether device ``d`` (on ``host``) is selected by this entry."""
        if self.host is not None and self.host != host:
            return False
        if self.model is not None and self.model.lower() not in d.model.lower():
            return False
        if self.pci_ids:
            pci = str(d.attributes.get(PCI_ID_ATTR, "")).lower()
            if pci not in {p.lower() for p in self.pci_ids}:
                return False
        if self.select == "all":
            return True
        idx = self.select if isinstance(self.select, list) else [self.select]
        return d.index in idx or d.id in idx or f"{d.backend}:{d.index}" in idx


def _read(path: str, what: str) -> str:
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise InvalidRequest(f"{what} {path} is over {MAX_FILE_BYTES} bytes")
        return p.read_text()
    except OSError as e:
        raise InvalidRequest(f"cannot read {what} {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidRequest(f"{what} {path} is not UTF-8 text") from None


def read_toml(path: str, what: str) -> dict[str, Any]:
    """The TOML file ``path`` (a ``what``: layout, demand, hosts or flavours file), parsed.

    Every failure is one line naming the file: unreadable, too large, not UTF-8, not TOML.
    """
    try:
        return tomllib.loads(_read(path, what))
    except tomllib.TOMLDecodeError as e:
        raise InvalidRequest(f"{what} {path} is not valid TOML: {e}") from None


def _counts(where: str, parts: Any) -> dict[str, int]:
    if not isinstance(parts, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in parts.items()
    ):
        raise InvalidRequest(f"{where} needs partitions as {{profile = count, ...}}, counts >= 0")
    return dict(parts)


def _select(where: str, sel: Any) -> Any:
    ok = sel == "all" or isinstance(sel, str) or (isinstance(sel, int) and sel >= 0)
    if isinstance(sel, list):
        ok = all(isinstance(i, int | str) and not isinstance(i, bool) for i in sel)
    if not ok or isinstance(sel, bool):
        raise InvalidRequest(f'{where}: select must be "all", an index, a list or a device id')
    return sel


def _pci(where: str, f: Any) -> tuple[str, ...]:
    ids = [f] if isinstance(f, str) else f
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidRequest(f"{where}: device-filter must be a PCI id or a list of them")
    return tuple(ids)


def _mig(where: str, v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    raise InvalidRequest(f"{where}: mig must be true or false")


def load_toml(path: str) -> list[Entry]:
    """The entries of an accelpool layout file (``[[device]]`` tables)."""
    data = read_toml(path, "layout file")
    tables = data.get("device", [])
    if not isinstance(tables, list) or not tables:
        raise InvalidRequest(f"{path}: no [[device]] tables; add one with select and partitions")
    out = []
    for i, t in enumerate(tables):
        where = f"{path}: device table {i}"
        if not isinstance(t, dict):
            raise InvalidRequest(f"{where} must be a [[device]] table")
        mig = _mig(where, t.get("mig"))
        parts = t.get("partitions")
        if parts is None and mig is None:
            raise InvalidRequest(f"{where} needs partitions = {{profile = count, ...}}")
        host = t.get("host")
        if host is not None and not isinstance(host, str):
            raise InvalidRequest(f"{where}: host must be a string")
        out.append(
            Entry(
                select=_select(where, t.get("select", "all")),
                model=str(t["model"]) if "model" in t else None,
                pci_ids=_pci(where, t["device-filter"]) if "device-filter" in t else (),
                host=host,
                partitions=None if parts is None else _counts(where, parts),
                mig=mig,
            )
        )
    return out


def config_names(path: str) -> list[str]:
    """The config names of a mig-parted ``mig-configs`` file, in file order."""
    return list(_migparted(path))


def _migparted(path: str) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        raise InvalidRequest("reading mig-parted YAML needs PyYAML: pip install pyyaml") from None
    try:
        doc = yaml.safe_load(_read(path, "mig-parted config"))
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InvalidRequest(f"mig-parted config {path} is not valid YAML: {first}") from None
    configs = doc.get("mig-configs") if isinstance(doc, dict) else None
    if not isinstance(configs, dict) or not configs:
        raise InvalidRequest(f"{path}: no mig-configs mapping (is it a mig-parted config?)")
    return configs


def load_migparted(path: str, name: str) -> list[Entry]:
    """The entries of config ``name`` in a mig-parted ``mig-configs`` YAML file."""
    configs = _migparted(path)
    if name not in configs:
        some = ", ".join(list(configs)[:8]) + (", ..." if len(configs) > 8 else "")
        raise InvalidRequest(f"{path} has no config {name!r} (it has {some})")
    items = configs[name]
    if not isinstance(items, list) or not items:
        raise InvalidRequest(f"{path}: config {name!r} must be a list of device entries")
    out = []
    for i, it in enumerate(items):
        where = f"{path}: config {name!r} entry {i}"
        if not isinstance(it, dict) or "mig-enabled" not in it:
            raise InvalidRequest(f"{where} needs devices and mig-enabled")
        mig = _mig(where, it["mig-enabled"])
        devs = it.get("devices", "all")
        if devs != "all" and not (
            isinstance(devs, list) and all(isinstance(d, int) and d >= 0 for d in devs)
        ):
            raise InvalidRequest(f"{where}: devices must be all or a list of indexes")
        parts = it.get("mig-devices")
        if mig is False and parts:
            raise InvalidRequest(f"{where}: mig-devices need mig-enabled: true")
        out.append(
            Entry(
                select=devs,
                pci_ids=_pci(where, it["device-filter"]) if "device-filter" in it else (),
                partitions={} if mig is False else _counts(where, parts or {}),
                mig=mig,
            )
        )
    return out


def load(path: str, config: str | None = None) -> list[Entry]:
    """The entries of a layout: a TOML layout file, or with ``config`` a mig-parted YAML."""
    return load_migparted(path, config) if config is not None else load_toml(path)


def resolve(
    entries: Sequence[Entry], devices: Sequence[Device], host: str | None = None
) -> list[tuple[Device, Entry]]:
    """Each selected device with the entry that applies to it (a later entry wins)."""
    chosen: dict[str, tuple[Device, Entry]] = {}
    for e in entries:
        for d in devices:
            if not d.lost and e.matches(d, host):
                chosen[d.id] = (d, e)
    return list(chosen.values())
