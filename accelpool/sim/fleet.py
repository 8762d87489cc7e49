"""Fleet descriptions: which simulated devices a host has.

A fleet is a small TOML file, or the name of a preset shipped in
``accelpool/sim/presets/``::

    name = "dgx-a100"
    [[devices]]
    backend = "nvidia"
    model = "A100-SXM4-40GB"
    count = 8
    [devices.options]
    mig = "enabled"

The core reads fleets; each backend's own simulator interprets ``model`` and
``options`` for its devices.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from accelpool.envconfig import shown
from accelpool.errors import InvalidRequest, NotFound
from accelpool.sim.state import StateStore, state_dir

#: The most simulated devices one fleet (one host) may have, all entries together:
#: far past any real host, enough to measure discovery at scale, and small enough
#: that a typo (``count = 100000``) is an error rather than minutes of work.
MAX_DEVICES = 4096
#: The largest fleet file read: a fleet is a few lines of TOML.
MAX_FLEET_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class FleetDevice:
    """``count`` simulated devices of one ``model`` for one backend."""

    backend: str
    model: str
    count: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


@dataclass(frozen=True)
class Fleet:
    """A simulated host: a name, its devices, and where its state lives."""

    name: str
    devices: tuple[FleetDevice, ...]
    key: str
    description: str = ""
    source: str = ""

    def for_backend(self, backend: str) -> tuple[FleetDevice, ...]:
        return tuple(d for d in self.devices if d.backend == backend)

    def backends(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.backend for d in self.devices))

    def state_root(self) -> Path:
        """Folder holding everything simulated for this fleet (state file, sysfs trees)."""
        return state_dir() / "sim" / self.key

    def state(self) -> StateStore:
        """The state store shared by every process simulating this fleet."""
        hint = f"accelpool --sim {shlex.quote(self.spec)} sim reset"
        return StateStore(self.state_root() / "state.json", reset_hint=hint)

    @property
    def spec(self) -> str:
        """What ``--sim`` names this fleet by: its preset's name or its file."""
        return self.source.removeprefix("preset ")

    def reset(self) -> bool:
        """Forget everything simulated for this fleet; True if there was anything.

        Deletes through :mod:`accelpool.safefs`: a link in the tree is removed, never
        followed.
        """
        from accelpool.statedir import open_state_tree

        tree = open_state_tree(self.state_root(), create=False)
        if tree is None:
            return False
        removed = False
        with tree, self.state().lock():
            for name in tree.listdir():
                if name == "state.json.lock":
                    continue  # held right now; other processes wait on it
                removed = tree.remove(name) or removed
        return removed

    def open_state(self) -> None:
        """Make (or check) this fleet's state folder now, so a state directory that
        cannot be used fails here, in the caller's thread, with one clear error."""
        from accelpool.statedir import open_state_tree

        tree = open_state_tree(self.state_root())
        if tree is not None:
            tree.close()


# hashlib, tomllib and importlib.resources are imported where used: plain discovery
# (no fleet) never needs them, and it is measured against a by-hand baseline.


def builtin_preset_names() -> list[str]:
    """Names of the presets shipped with accelpool."""
    from importlib import resources

    root = resources.files("accelpool.sim") / "presets"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def preset_names() -> list[str]:
    """Names of the presets: accelpool's own and those plugins ship (``accelpool.presets``)."""
    from accelpool.sim.plugin_presets import plugin_preset_names

    return sorted({*builtin_preset_names(), *plugin_preset_names()})


def _parse(text: str, *, source: str, key: str, default_name: str) -> Fleet:
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidRequest(f"fleet file {source} is not valid TOML: {e}") from None
    raw_devices = doc.get("devices")
    if not isinstance(raw_devices, list) or not raw_devices:
        raise InvalidRequest(f"fleet {source} has no [[devices]] entries; add at least one")
    devices = []
    total = 0
    for i, d in enumerate(raw_devices):
        if not isinstance(d, dict) or not isinstance(d.get("backend"), str):
            raise InvalidRequest(f"fleet {source}: devices[{i}] needs a 'backend' string")
        if not isinstance(d.get("model"), str):
            raise InvalidRequest(f"fleet {source}: devices[{i}] needs a 'model' string")
        count = d.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidRequest(f"fleet {source}: devices[{i}].count must be a positive integer")
        total += count
        if total > MAX_DEVICES:
            raise InvalidRequest(
                f"fleet {source}: devices[{i}].count = {count} makes more than "
                f"{MAX_DEVICES} devices on one host, the most a fleet may have; lower it"
            )
        for field_name in ("backend", "model"):
            if not d[field_name].isprintable() or not 0 < len(d[field_name]) <= 100:
                raise InvalidRequest(
                    f"fleet {source}: devices[{i}].{field_name} must be a short printable name"
                )
        options = d.get("options", {})
        if not isinstance(options, dict):
            raise InvalidRequest(f"fleet {source}: devices[{i}].options must be a table")
        devices.append(FleetDevice(d["backend"], d["model"], count, options))
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not name.isprintable() or not 0 < len(name) <= 100:
        raise InvalidRequest(f"fleet {source}: 'name' must be a short printable string")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise InvalidRequest(f"fleet {source}: 'description' must be a string")
    return Fleet(
        name=name,
        devices=tuple(devices),
        key=key,
        description=description,
        source=source,
    )


def load_fleet(spec: str) -> Fleet:
    """A fleet from a preset name or a path to a TOML fleet file."""
    import hashlib
    from importlib import resources

    if spec in builtin_preset_names():
        text = (resources.files("accelpool.sim") / "presets" / f"{spec}.toml").read_text()
        return _parse(text, source=f"preset {spec}", key=spec, default_name=spec)
    if spec and "/" not in spec and not spec.endswith(".toml"):
        from accelpool.sim.plugin_presets import plugin_preset_text

        plugin_text = plugin_preset_text(spec)
        if plugin_text is not None:
            return _parse(plugin_text, source=f"preset {spec}", key=spec, default_name=spec)
    try:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise NotFound(
                f"no simulated fleet {shown(spec)}: not a preset ({', '.join(preset_names())}) "
                "and not a fleet file"
            )
        with path.open("rb") as f:
            raw = f.read(MAX_FLEET_FILE_BYTES + 1)
        resolved = path.resolve()
    except (OSError, ValueError, RuntimeError) as e:  # ENAMETOOLONG, a NUL, '~nouser'
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise InvalidRequest(
            f"cannot read fleet file {shown(spec)}: {why}; give a preset name or "
            "the path of a readable TOML file"
        ) from None
    if len(raw) > MAX_FLEET_FILE_BYTES:
        raise InvalidRequest(
            f"fleet file {shown(spec)} is over {MAX_FLEET_FILE_BYTES >> 20} MiB; a fleet is a few "
            "lines of TOML (see docs/simulation.md)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidRequest(
            f"fleet file {shown(spec)} is not UTF-8 text (byte {e.start}); a fleet is a TOML file "
            "(see docs/simulation.md)"
        ) from None
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    return _parse(
        text,
        source=str(path),
        key=f"{path.stem}-{digest}",
        default_name=path.stem,
    )
