"""CDI specs (Container Device Interface): build, check against the spec's rules, write.

A spec has ``cdiVersion``, ``kind`` (``vendor.com/class``), ``devices`` (each a ``name``
and ``containerEdits``) and spec-wide ``containerEdits``. Runtimes refuse a spec with
an unknown field or with content newer than its ``cdiVersion``, so the version written
is the least the content needs (``hostPath`` on a device node needs 0.5.0, annotations
0.6.0). Files are replaced atomically, so a runtime never reads half a spec.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from accelpool.container import ContainerEdits, DeviceNode, container_edits

KIND = re.compile(r"^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?/[a-zA-Z0-9]([a-zA-Z0-9_.-]*[a-zA-Z0-9])?$")
NAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9_.:-]*[a-zA-Z0-9])?$")
ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=.*$")
VERSIONS = ("0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
SPEC_KEYS = {"cdiVersion", "kind", "annotations", "devices", "containerEdits"}
DEVICE_KEYS = {"name", "annotations", "containerEdits"}
EDIT_KEYS = {"env", "deviceNodes", "hooks", "mounts", "intelRdt", "additionalGIDs", "netDevices"}
NODE_KEYS = {"path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"}
MOUNT_KEYS = {"hostPath", "containerPath", "options", "type"}


def _node(n: DeviceNode) -> dict[str, Any]:
    out: dict[str, Any] = {"path": n.path}
    if n.host_path and n.host_path != n.path:
        out["hostPath"] = n.host_path
    out["permissions"] = n.permissions
    return out


def edits_dict(edits: ContainerEdits, shared: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if edits.env and not shared:
        out["env"] = [f"{k}={v}" for k, v in edits.env.items()]
    nodes = edits.shared_device_nodes if shared else edits.device_nodes
    if nodes:
        out["deviceNodes"] = [_node(n) for n in nodes]
    if edits.mounts and not shared:
        out["mounts"] = [
            {"hostPath": m.host_path, "containerPath": m.container_path, "options": list(m.options)}
            for m in edits.mounts
        ]
    return out


def build_spec(kind: str, devices: Mapping[str, ContainerEdits]) -> dict[str, Any]:
    """A spec for ``devices`` (CDI name -> edits); their shared nodes go spec-wide."""
    shared: dict[str, dict[str, Any]] = {}
    for edits in devices.values():
        for n in edits.shared_device_nodes:
            shared.setdefault(n.path, _node(n))
    spec: dict[str, Any] = {
        "cdiVersion": "0.3.0",
        "kind": kind,
        "devices": [{"name": name, "containerEdits": edits_dict(e)} for name, e in devices.items()],
    }
    if shared:
        spec["containerEdits"] = {"deviceNodes": list(shared.values())}
    spec["cdiVersion"] = minimum_version(spec)
    return spec


def _edits(spec: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield spec.get("containerEdits") or {}
    for d in spec.get("devices") or []:
        yield d.get("containerEdits") or {}


def minimum_version(spec: dict[str, Any]) -> str:
    """The least ``cdiVersion`` whose schema holds everything in ``spec``."""
    need = "0.3.0"

    def at_least(v: str) -> None:
        nonlocal need
        if VERSIONS.index(v) > VERSIONS.index(need):
            need = v

    for e in _edits(spec):
        if any("hostPath" in n for n in e.get("deviceNodes") or []):
            at_least("0.5.0")
        if any("type" in m for m in e.get("mounts") or []):
            at_least("0.4.0")
        if e.get("intelRdt") or e.get("additionalGIDs"):
            at_least("0.7.0")
        if e.get("netDevices"):
            at_least("1.1.0")
    devices = spec.get("devices") or []
    if any(str(d.get("name", "a"))[:1].isdigit() for d in devices):
        at_least("0.5.0")
    if spec.get("annotations") or any(d.get("annotations") for d in devices):
        at_least("0.6.0")
    return need


def spec_problems(spec: Any) -> list[str]:
    """The CDI rules ``spec`` breaks: required fields, unknown fields, names, version."""
    if not isinstance(spec, dict):
        return ["a CDI spec is an object"]
    out = [f"unknown field {k!r}" for k in spec if k not in SPEC_KEYS]
    version, kind = spec.get("cdiVersion"), spec.get("kind")
    if version not in VERSIONS:
        out.append(f"cdiVersion {version!r} is not a released CDI version")
    elif VERSIONS.index(version) < VERSIONS.index(minimum_version(spec)):
        out.append(
            f"cdiVersion {version} is older than the content needs ({minimum_version(spec)})"
        )
    if not isinstance(kind, str) or not KIND.match(kind):
        out.append(f"kind {kind!r} is not 'vendor.com/class'")
    devices = spec.get("devices")
    if not isinstance(devices, list) or not devices:
        out.append("devices is required and must not be empty")
        devices = []
    names: set[str] = set()
    for d in devices:
        out.extend(f"device field {k!r} is unknown" for k in d if k not in DEVICE_KEYS)
        name = d.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            out.append(f"device name {name!r} is not a valid CDI name")
        elif name in names:
            out.append(f"device {name} is defined twice")
        names.add(str(name))
        if "containerEdits" not in d:
            out.append(f"device {name}: containerEdits is required")
    for e in _edits(spec):
        out.extend(f"containerEdits field {k!r} is unknown" for k in e if k not in EDIT_KEYS)
        out.extend(f"env {v!r} is not NAME=value" for v in e.get("env") or [] if not ENV.match(v))
        for n in e.get("deviceNodes") or []:
            out.extend(f"deviceNode field {k!r} is unknown" for k in n if k not in NODE_KEYS)
            if not str(n.get("path", "")).startswith("/"):
                out.append(f"deviceNode path {n.get('path')!r} is not absolute")
        for m in e.get("mounts") or []:
            out.extend(f"mount field {k!r} is unknown" for k in m if k not in MOUNT_KEYS)
            if "hostPath" not in m or "containerPath" not in m:
                out.append("a mount needs hostPath and containerPath")
    return out


def dump(spec: dict[str, Any], fmt: str = "json") -> str:
    if fmt == "yaml":
        return str(yaml.safe_dump(spec, sort_keys=False))
    return json.dumps(spec, indent=2) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def spec_file(directory: Path, kind: str, fmt: str = "json") -> Path:
    """``<dir>/<vendor>-<class>.json``, the file name CDI tools use for a kind."""
    return directory / (kind.replace("/", "-") + (".yaml" if fmt == "yaml" else ".json"))


def qualified(kind: str, names: Sequence[str]) -> list[str]:
    """Fully qualified CDI device names: ``vendor.com/class=name``."""
    return [f"{kind}={n}" for n in names]


def host_specs(inv: Any, driver: str) -> dict[str, dict[str, Any]]:
    """One spec per available backend (kind ``<driver>/<backend>``): every device a
    container can use whole and every live partition, named as in the ResourceSlices."""
    from accelpool.errors import AccelPoolError
    from accelpool_kubernetes.catalog import CONTAINER_KINDS, device_name, physical_device

    out: dict[str, dict[str, Any]] = {}
    for status in inv.backends():
        if not status.available:
            continue
        devices: dict[str, ContainerEdits] = {}
        for dev in inv.devices(status.name):
            if dev.lost:
                continue
            # not usable whole (a MIG-enabled GPU): its partitions are
            with contextlib.suppress(AccelPoolError):
                devices[device_name(dev)] = container_edits(dev)
            pd = physical_device(dev)
            for ld in pd.devices if pd else ():
                if ld.partition is not None and ld.partition.kind in CONTAINER_KINDS:
                    with contextlib.suppress(AccelPoolError):
                        devices[ld.name] = container_edits(ld.partition)
        if devices:
            kind = f"{driver}/{status.name}"
            out[kind] = build_spec(kind, devices)
    return out
