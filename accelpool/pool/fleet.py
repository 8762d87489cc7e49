"""The fleet as numpy arrays: per-host free CPU and memory, per-device state codes.

A device's state is one integer code so that every policy can score all hosts and
devices at once:

- fractional mode: the free share in milli (1000 is an untouched device);
- MIG mode: ``mask | used << 8``, the occupied memory slices and the compute slices used.

Hosts with fewer devices than the widest host are padded with devices that are full,
so they are never chosen and never count as free capacity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accelpool.errors import InvalidRequest
from accelpool.pool.mig import A100_40GB, MigGeometry
from accelpool.pool.model import MILLI, Demand, Host, MigInstance, PoolDevice

MODES = ("fractional", "mig")


@dataclass(frozen=True)
class Request:
    """A demand as the fleet sees it in its mode."""

    cpu: int
    mem: int
    count: int  # devices asked for (0: CPU only)
    key: int  # fractional: milli per device; MIG: profile index
    units: int  # capacity units taken in all (milli, or compute slices)
    share: bool  # a part of one device (options per device and placement)
    models: np.ndarray  # bool over the fleet's model indexes


@dataclass(frozen=True)
class Choice:
    """A decision: host, devices, the devices' new codes and (MIG) the start slice."""

    node: int
    gpus: tuple[int, ...]
    codes: tuple[int, ...]
    start: int | None = None


class Fleet:
    """Mutable placement state over a list of hosts."""

    def __init__(
        self, hosts: Sequence[Host], mode: str = "fractional", geometry: MigGeometry = A100_40GB
    ) -> None:
        if mode not in MODES:
            raise InvalidRequest(f"unknown pool mode {mode!r}: use one of {', '.join(MODES)}")
        if not hosts:
            raise InvalidRequest("no hosts to place on: give at least one host")
        self.mode = mode
        self.geometry = geometry
        self.hosts = list(hosts)
        self.names = [h.name for h in hosts]
        n = len(hosts)
        self.G = max(1, max(len(h.devices) for h in hosts))
        models = sorted({d.model for h in hosts for d in h.devices})
        self.model_names = models or [""]
        index = {m: i for i, m in enumerate(self.model_names)}
        self.cpu = np.array([h.cpu_milli for h in hosts], dtype=np.int64)
        self.mem = np.array([h.memory_mib for h in hosts], dtype=np.int64)
        self.ngpu = np.array([len(h.devices) for h in hosts], dtype=np.int64)
        # A host's devices share one model in the trace; a mixed host takes its first.
        self.model = np.array(
            [index[h.devices[0].model] if h.devices else 0 for h in hosts], dtype=np.int64
        )
        if mode == "fractional":
            self.cap = MILLI
            self.full_code = MILLI
            self.used_code = 0
            pad = 0
        else:
            self.cap = geometry.compute_slices
            self.full_code = 0
            self.used_code = geometry.full_mask | (geometry.compute_slices << 8)
            pad = self.used_code
            self._can_host = geometry.can_host
        self.code = np.full((n, self.G), pad, dtype=np.int64)
        self.instances: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for i, h in enumerate(hosts):
            for g, d in enumerate(h.devices):
                self.code[i, g] = self._initial_code(i, g, d)
        self.capacity_units = int(self.ngpu.sum()) * self.cap
        self.rng = np.random.default_rng(0)

    def _initial_code(self, i: int, g: int, d: PoolDevice) -> int:
        if self.mode == "fractional":
            return d.free_milli
        insts = [(self.geometry.index(m.profile), m.start) for m in d.mig]
        mask, used = self.geometry.state_of(insts)
        self.instances[(i, g)] = insts
        return mask | (used << 8)

    # --- the mode's view of a device code -------------------------------------------------

    def free(self, code: np.ndarray) -> np.ndarray:
        """Free capacity units of device codes."""
        if self.mode == "fractional":
            return code
        return self.cap - (code >> 8)

    def fits(self, code: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """``code.shape + (len(keys),)``: whether each device can take one more device's
        worth of each key (milli threshold, or MIG profile)."""
        if self.mode == "fractional":
            return code[..., None] >= keys
        return self._can_host[code & 0xFF][..., keys]

    def request(self, d: Demand) -> Request:
        """Translate a demand into this mode's request; raises when no host could ever
        serve it because of its shape."""
        models = (
            np.array([m in d.models for m in self.model_names])
            if d.models
            else np.ones(len(self.model_names), dtype=bool)
        )
        if d.gpus == 0:
            return Request(d.cpu_milli, d.memory_mib, 0, 0, 0, False, models)
        if self.mode == "fractional":
            return Request(
                d.cpu_milli, d.memory_mib, d.gpus, d.gpu_milli, d.total_milli, d.is_share, models
            )
        geo = self.geometry
        prof = geo.profile_for_share(d.gpu_milli / MILLI) if d.is_share else geo.whole
        share = prof != geo.whole
        return Request(
            d.cpu_milli,
            d.memory_mib,
            d.gpus,
            prof,
            d.gpus * geo.profiles[prof].compute,
            share,
            models,
        )

    def whole_key(self) -> int:
        return MILLI if self.mode == "fractional" else self.geometry.whole

    def host_ok(self, r: Request) -> np.ndarray:
        """Hosts with the CPU, memory and device model the request needs."""
        return (self.cpu >= r.cpu) & (self.mem >= r.mem) & r.models[self.model]

    def options(self, code: np.ndarray, r: Request) -> tuple[np.ndarray, np.ndarray]:
        """For a share request: ``(new codes, valid)`` of shape ``code.shape + (S,)``, one
        option per placement start (S is 1 in fractional mode)."""
        if self.mode == "fractional":
            new = (code - r.key)[..., None]
            return new, new >= 0
        geo = self.geometry
        pm = geo.mask_table[r.key]
        valid = ((code[..., None] & 0xFF) & pm) == 0
        valid &= geo.start_table[r.key] >= 0
        new = code[..., None] + pm + (geo.profiles[r.key].compute << 8)
        return new, valid

    def start_of(self, r: Request, option: int) -> int | None:
        if self.mode == "fractional":
            return None
        return int(self.geometry.start_table[r.key, option])

    def feasible(self, r: Request) -> np.ndarray:
        """Hosts that can take the request now."""
        ok = self.host_ok(r)
        if r.count == 0:
            return ok
        if r.share:
            _, valid = self.options(self.code, r)
            return ok & valid.any(axis=(1, 2))
        return ok & ((self.code == self.full_code).sum(axis=1) >= r.count)

    def whole_choice(self, node: int, r: Request) -> Choice:
        """Take the lowest-indexed untouched devices of a host for a whole-device request."""
        gpus = tuple(int(g) for g in np.flatnonzero(self.code[node] == self.full_code)[: r.count])
        return Choice(node, gpus, (self.used_code,) * len(gpus), 0 if self.mode == "mig" else None)

    def apply(self, c: Choice, r: Request) -> None:
        self.cpu[c.node] -= r.cpu
        self.mem[c.node] -= r.mem
        for g, code in zip(c.gpus, c.codes, strict=True):
            self.code[c.node, g] = code
            if self.mode == "mig":
                prof = r.key if r.share else self.geometry.whole
                self.instances.setdefault((c.node, g), []).append((prof, c.start or 0))

    def allocated_units(self) -> int:
        real = np.arange(self.G)[None, :] < self.ngpu[:, None]
        return int(((self.cap - self.free(self.code)) * real).sum())

    def snapshot(self) -> list[Host]:
        """The hosts as they stand now (free CPU, memory, device state)."""
        out = []
        for i, h in enumerate(self.hosts):
            devs = []
            for g, d in enumerate(h.devices):
                if self.mode == "fractional":
                    devs.append(PoolDevice(d.model, int(self.code[i, g])))
                else:
                    insts = tuple(
                        MigInstance(self.geometry.profiles[p].name, s)
                        for p, s in self.instances.get((i, g), [])
                    )
                    devs.append(PoolDevice(d.model, d.free_milli, insts))
            out.append(Host(h.name, int(self.cpu[i]), int(self.mem[i]), tuple(devs)))
        return out
