"""Placement policies: given the fleet and one request, pick a host and devices.

Every policy scores all feasible hosts (and, for a share, every device and placement)
with numpy; none loops over devices in Python. The baselines follow the FGD paper's
simulator: integer scores 0-100, ties to the lowest-indexed host, then device, then
placement start.
"""

from __future__ import annotations

import numpy as np

from accelpool.errors import InvalidRequest
from accelpool.pool.fleet import Choice, Fleet, Request
from accelpool.pool.frag import FragModel, WorkloadMix


class Policy:
    """Base class: ``bind`` to a fleet, then ``choose`` per request; ``placed`` after."""

    name = ""

    def bind(self, fleet: Fleet, mix: WorkloadMix) -> None:
        self.fleet = fleet
        self.mix = mix

    def choose(self, r: Request) -> Choice | None:
        f = self.fleet
        nodes = np.flatnonzero(f.feasible(r))
        if len(nodes) == 0:
            return None
        if r.share:
            return self.choose_share(nodes, r)
        return f.whole_choice(int(nodes[self.pick_whole(nodes, r)]), r)

    def placed(self, c: Choice) -> None:
        """Hook: the fleet has applied ``c``."""

    def pick_whole(self, nodes: np.ndarray, r: Request) -> int:
        """Index into ``nodes`` for a whole-device or CPU-only request."""
        raise NotImplementedError

    def choose_share(self, nodes: np.ndarray, r: Request) -> Choice:
        """Host, device and placement for a share request."""
        raise NotImplementedError

    def _share_choice(self, node: int, g: int, s: int, new: np.ndarray, r: Request) -> Choice:
        return Choice(node, (g,), (int(new[g, s]),), self.fleet.start_of(r, s))


class _NodeScore(Policy):
    """Policies that score hosts, then take the tightest device on the chosen host."""

    def node_scores(self, nodes: np.ndarray, r: Request) -> np.ndarray:
        raise NotImplementedError

    def pick_whole(self, nodes: np.ndarray, r: Request) -> int:
        return int(np.argmax(self.node_scores(nodes, r)))

    def choose_share(self, nodes: np.ndarray, r: Request) -> Choice:
        f = self.fleet
        node = int(nodes[np.argmax(self.node_scores(nodes, r))])
        new, valid = f.options(f.code[node], r)
        return self._tightest(node, new, valid, r)

    def _tightest(self, node: int, new: np.ndarray, valid: np.ndarray, r: Request) -> Choice:
        # The device with the least free capacity that still fits, lowest start on it.
        f = self.fleet
        free = np.where(valid.any(axis=1), f.free(f.code[node]), np.iinfo(np.int64).max)
        g = int(np.argmin(free))
        return self._share_choice(node, g, int(np.argmax(valid[g])), new, r)


class FirstFit(_NodeScore):
    """The first host, device and placement that fit."""

    name = "first-fit"

    def node_scores(self, nodes: np.ndarray, r: Request) -> np.ndarray:
        return np.zeros(len(nodes))

    def choose_share(self, nodes: np.ndarray, r: Request) -> Choice:
        f = self.fleet
        node = int(nodes[0])
        new, valid = f.options(f.code[node], r)
        g, s = np.unravel_index(int(np.argmax(valid)), valid.shape)
        return self._share_choice(node, int(g), int(s), new, r)


class RandomFit(Policy):
    """A host chosen uniformly among those that fit, then a fitting device and placement."""

    name = "random"

    def pick_whole(self, nodes: np.ndarray, r: Request) -> int:
        return int(self.fleet.rng.integers(len(nodes)))

    def choose_share(self, nodes: np.ndarray, r: Request) -> Choice:
        f = self.fleet
        node = int(nodes[f.rng.integers(len(nodes))])
        new, valid = f.options(f.code[node], r)
        opts = np.flatnonzero(valid)
        g, s = np.unravel_index(int(opts[f.rng.integers(len(opts))]), valid.shape)
        return self._share_choice(node, int(g), int(s), new, r)


def _norms(f: Fleet) -> tuple[float, float]:
    # The simulator normalises by the largest host: 128 cores and 8 devices in the trace.
    return float(max(1, int(f.cpu.max(initial=0)))), float(f.G * f.cap)


class BestFit(_NodeScore):
    """The host left with the least CPU and device capacity (half weight each)."""

    name = "best-fit"

    def bind(self, fleet: Fleet, mix: WorkloadMix) -> None:
        super().bind(fleet, mix)
        self.cpu_norm, self.gpu_norm = _norms(fleet)

    def node_scores(self, nodes: np.ndarray, r: Request) -> np.ndarray:
        f = self.fleet
        left = (f.cpu[nodes] - r.cpu) / self.cpu_norm * 0.5
        left += (f.free(f.code[nodes]).sum(axis=1) - r.units) / self.gpu_norm * 0.5
        return np.floor((1.0 - left) * 100.0)


class DotProduct(_NodeScore):
    """Tetris-style alignment of the request with the host's free capacity, as the FGD
    paper's simulator scores it (CPU and total device capacity, normalised by the largest
    host; the smaller product scores higher)."""

    name = "dot-product"

    def bind(self, fleet: Fleet, mix: WorkloadMix) -> None:
        super().bind(fleet, mix)
        self.cpu_norm, self.gpu_norm = _norms(fleet)

    def node_scores(self, nodes: np.ndarray, r: Request) -> np.ndarray:
        f = self.fleet
        dot = (f.cpu[nodes] / self.cpu_norm) * (r.cpu / self.cpu_norm)
        dot += (f.free(f.code[nodes]).sum(axis=1) / self.gpu_norm) * (r.units / self.gpu_norm)
        return np.floor(100.0 * (1.0 - dot / 2.0))


class FGD(Policy):
    """Fragmentation gradient descent: the host, device and placement that least increase
    the expected fragmentation under the workload mix. Scores are the simulator's:
    ``floor(100 * sigmoid(decrease / one device))``."""

    name = "fgd"

    def bind(self, fleet: Fleet, mix: WorkloadMix) -> None:
        super().bind(fleet, mix)
        self.frag = FragModel(fleet, mix)
        self.scale = float(fleet.cap)

    def score(self, decrease: np.ndarray) -> np.ndarray:
        x = np.clip(decrease / self.scale, -50.0, 50.0)
        return np.floor((1.0 / (1.0 + np.exp(-x))) * 100.0)

    def pick_whole(self, nodes: np.ndarray, r: Request) -> int:
        dec = self.frag.frag[nodes] - self.frag.whole_after(nodes, r)
        return int(np.argmax(self.score(dec)))

    def choose_share(self, nodes: np.ndarray, r: Request) -> Choice:
        after, new, valid = self.frag.share_after(nodes, r)
        dec = self.frag.frag[nodes][:, None, None] - after
        s = np.where(valid, self.score(dec), -np.inf)
        i, g, k = np.unravel_index(int(np.argmax(s)), s.shape)
        return self._share_choice(int(nodes[i]), int(g), int(k), new[i], r)

    def placed(self, c: Choice) -> None:
        self.frag.refresh(c.node)


POLICIES: dict[str, type[Policy]] = {
    p.name: p for p in (RandomFit, FirstFit, BestFit, DotProduct, FGD)
}


def get_policy(name: str | Policy) -> Policy:
    """A fresh policy by name (or the policy itself)."""
    if isinstance(name, Policy):
        return name
    try:
        return POLICIES[name]()
    except KeyError:
        raise InvalidRequest(
            f"unknown placement policy {name!r}: use one of {', '.join(POLICIES)}"
        ) from None


class Accelpool(FGD):
    """accelpool's own policy (see docs/pool.md)."""

    name = "accelpool"
    quantum = 0.0  # fragmentation decrease rounded to this (device fractions); 0: exact
    pack = 0.05  # weight of the best-fit term (free capacity left on the host)
    sig = False  # score by FGD's 0-100 sigmoid first
    index = 0.2  # weight of the host index (first-fit bias)

    def bind(self, fleet: Fleet, mix: WorkloadMix) -> None:
        super().bind(fleet, mix)
        self.cpu_norm, self.gpu_norm = _norms(fleet)
        self._idx: np.ndarray = np.zeros(1)

    def _key(self, dec: np.ndarray, left: np.ndarray) -> np.ndarray:
        d = dec / self.scale
        if self.sig:
            d = self.score(dec)
        elif self.quantum:
            d = np.floor(d / self.quantum) * self.quantum
        return d - self.pack * left - self.index * self._idx

    def _left(self, nodes: np.ndarray, r: Request) -> np.ndarray:
        f = self.fleet
        return (f.cpu[nodes] - r.cpu) / self.cpu_norm * 0.5 + (
            self.frag.tot[nodes] - r.units
        ) / self.gpu_norm * 0.5

    def pick_whole(self, nodes: np.ndarray, r: Request) -> int:
        dec = self.frag.frag[nodes] - self.frag.whole_after(nodes, r)
        self._idx = nodes / len(self.fleet.cpu)
        return int(np.argmax(self._key(dec, self._left(nodes, r))))

    def choose_share(self, nodes: np.ndarray, r: Request) -> Choice:
        after, new, valid = self.frag.share_after(nodes, r)
        dec = self.frag.frag[nodes][:, None, None] - after
        left = self._left(nodes, r)[:, None, None]
        self._idx = (nodes / len(self.fleet.cpu))[:, None, None]
        s = np.where(valid, self._key(dec, left), -np.inf)
        i, g, k = np.unravel_index(int(np.argmax(s)), s.shape)
        return self._share_choice(int(nodes[i]), int(g), int(k), new[i], r)


POLICIES[Accelpool.name] = Accelpool
