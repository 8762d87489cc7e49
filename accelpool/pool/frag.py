"""Expected GPU fragmentation (FGD, Weng et al., USENIX ATC '23), vectorised over hosts.

A *workload mix* is the set of typical task classes and their frequencies. For one host
and one class, the host's fragment is

- the free capacity of the devices that cannot take one device's worth of the class, if
  the host could still run the class (enough such devices, enough CPU, right model);
- all of the host's free device capacity otherwise (CPU-only classes count this way too).

A host's fragmentation is the frequency-weighted sum over classes. Classes differ only
by a few device keys (a milli threshold, or a MIG profile), by the number of devices and
by CPU, so the weights of the satisfied classes come from one table indexed by (model,
key, devices that fit, CPU rank): scoring every device of every host is a few array
operations per task.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accelpool.pool.fleet import Fleet, Request
from accelpool.pool.model import Demand


@dataclass(frozen=True)
class WorkloadMix:
    """Typical task classes ``(cpu_milli, gpus, gpu_milli, models)`` with frequencies."""

    classes: tuple[tuple[Demand, float], ...]

    @classmethod
    def from_demands(cls, demands: Sequence[Demand], coverage: float = 0.95) -> WorkloadMix:
        """The most frequent classes that together cover ``coverage`` of the demands,
        renormalised, as the FGD paper's simulator builds its typical pods (memory is not
        part of a class)."""
        counts = Counter((d.cpu_milli, d.gpu_milli, d.gpus, d.models) for d in demands)
        if not counts:
            return cls(())
        total = sum(counts.values())
        # Most frequent first; equal counts: the larger class first (as the simulator).
        ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        chosen, cum = [], 0
        for key, n in ranked:
            if cum >= coverage * total:
                break
            chosen.append((key, n))
            cum += n
        out = tuple(
            (Demand(cpu_milli=c, gpus=g, gpu_milli=m or 1000, models=mod), n / cum)
            for (c, m, g, mod), n in chosen
        )
        return cls(out)


class FragModel:
    """A fleet's fragmentation under a workload mix, kept per host as the fleet changes."""

    def __init__(self, fleet: Fleet, mix: WorkloadMix) -> None:
        self.fleet = fleet
        reqs = [(fleet.request(d), w) for d, w in mix.classes]
        gpu_reqs = [(r, w) for r, w in reqs if r.count > 0]
        self.keys = np.array(sorted({r.key for r, _ in gpu_reqs}) or [fleet.whole_key()])
        self.cpus = np.array(sorted({r.cpu for r, _ in gpu_reqs}) or [0], dtype=np.int64)
        self.wall = float(sum(w for _, w in reqs)) or 1.0
        m, u, g, j = len(fleet.model_names), len(self.keys), fleet.G, len(self.cpus)
        tab = np.zeros((m, u, g + 2, j + 1))
        ukey = {int(k): i for i, k in enumerate(self.keys)}
        for r, w in gpu_reqs:
            rank = int(np.searchsorted(self.cpus, r.cpu))
            if r.count <= g:
                # Satisfied when at least r.count devices fit and the CPU left is >= r.cpu.
                tab[r.models, ukey[r.key], r.count :, rank + 1 :] += w
        self.tab = tab
        self.cnt = np.zeros((len(fleet.cpu), u), dtype=np.int64)
        self.snf = np.zeros((len(fleet.cpu), u), dtype=np.int64)
        self.tot = np.zeros(len(fleet.cpu), dtype=np.int64)
        self.frag = np.zeros(len(fleet.cpu))
        self.refresh(np.arange(len(fleet.cpu)))

    def refresh(self, nodes: np.ndarray | int) -> None:
        """Recompute the cached per-host figures of ``nodes`` from the fleet."""
        f = self.fleet
        code = f.code[nodes]
        fits = f.fits(code, self.keys)
        free = f.free(code)
        self.cnt[nodes] = fits.sum(axis=-2)
        self.snf[nodes] = (free[..., None] * ~fits).sum(axis=-2)
        self.tot[nodes] = free.sum(axis=-1)
        self.frag[nodes] = self.value(
            self.cnt[nodes], self.snf[nodes], self.tot[nodes], f.cpu[nodes], f.model[nodes]
        )

    def value(
        self,
        cnt: np.ndarray,
        snf: np.ndarray,
        tot: np.ndarray,
        cpu: np.ndarray,
        model: np.ndarray,
    ) -> np.ndarray:
        """Fragmentation of hosts in the given state; ``cnt`` and ``snf`` end in the key
        axis, the others broadcast against the leading axes."""
        j = np.searchsorted(self.cpus, cpu, side="right")
        u = np.arange(len(self.keys))
        cnt = np.minimum(cnt, self.fleet.G + 1)
        w = self.tab[model[..., None], u, cnt, j[..., None]]
        return (w * snf).sum(axis=-1) + (self.wall - w.sum(axis=-1)) * tot

    def share_after(
        self, nodes: np.ndarray, r: Request
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For a share request on ``nodes``: the fragmentation after each option
        ``[len(nodes), G, S]``, the options' new codes and their validity."""
        f = self.fleet
        code = f.code[nodes]
        new, valid = f.options(code, r)
        fo = f.fits(code, self.keys)
        fn = f.fits(new, self.keys)
        free_o = f.free(code)
        cnt = self.cnt[nodes][:, None, None, :] - fo[:, :, None, :] + fn
        snf = (
            self.snf[nodes][:, None, None, :]
            - (free_o[..., None] * ~fo)[:, :, None, :]
            + f.free(new)[..., None] * ~fn
        )
        tot = (self.tot[nodes] - r.units)[:, None, None]
        cpu = (f.cpu[nodes] - r.cpu)[:, None, None]
        model = f.model[nodes][:, None, None]
        return self.value(cnt, snf, tot, cpu, model), new, valid

    def whole_after(self, nodes: np.ndarray, r: Request) -> np.ndarray:
        """Fragmentation after a whole-device (or CPU-only) request on each of ``nodes``."""
        f = self.fleet
        return self.value(
            self.cnt[nodes] - r.count,
            self.snf[nodes],
            self.tot[nodes] - r.units,
            f.cpu[nodes] - r.cpu,
            f.model[nodes],
        )
