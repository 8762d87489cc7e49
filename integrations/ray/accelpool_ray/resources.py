"""Ray custom resources for what accelpool sees on a host, and requests for them.

Two families of names, stable and documented in docs/ray.md:

* ``accelpool/<backend>/<model>``: whole devices of one model that can be used whole
  (no partitions, and a visibility variable that can name them: an NVIDIA GPU in MIG
  mode cannot), e.g. ``accelpool/nvidia/A100-SXM4-40GB``;
* ``accelpool/<backend>/<kind>-<profile>``: live partitions of one profile, e.g.
  ``accelpool/nvidia/mig-1g.5gb``, ``accelpool/ascend/vnpu-vir05_1c_16g``.

The amount is how many such targets the host has. Partitions that live only in the
process that made them (OpenCL sub-devices) and half-made ones are not published.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from accelpool.errors import InvalidRequest, NotFound
from accelpool.inventory import Device, Inventory, Partition, discover

#: Prefix of every resource accelpool_ray publishes.
PREFIX = "accelpool/"
_GIB = 1024**3
#: Ray sets these visibility variables itself when ``num_gpus`` (or ``NPU``) is asked for;
#: ``RAY_EXPERIMENTAL_NOSET_<var>=1`` keeps its hands off them.
RAY_MANAGED_VISIBILITY = (
    "CUDA_VISIBLE_DEVICES",
    "ASCEND_RT_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
)
NOSET_ENV = {f"RAY_EXPERIMENTAL_NOSET_{var}": "1" for var in RAY_MANAGED_VISIBILITY}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text.strip()).strip("-") or "unknown"


def model_slug(device: Device) -> str:
    """The model part of a device family name: the vendor's prefix dropped, no spaces."""
    model = device.model.strip()
    vendor = device.vendor.strip()
    if vendor and model.lower().startswith(vendor.lower() + " "):
        model = model[len(vendor) + 1 :]
    return _slug(model)


def device_family(device: Device) -> str:
    """``accelpool/<backend>/<model>`` of a whole device."""
    return f"{PREFIX}{device.backend}/{model_slug(device)}"


def partition_family(backend: str, kind: str, profile: str) -> str:
    """``accelpool/<backend>/<kind>-<profile>`` of a partition profile."""
    return f"{PREFIX}{backend}/{_slug(kind)}-{_slug(profile)}"


@dataclass
class Family:
    """One published resource: its name, what it stands for, and the targets behind it."""

    name: str
    backend: str
    kind: str  # "device", or the partition kind ("mig", "vnpu", ...)
    label: str  # the model (devices) or the profile name (partitions)
    memory_bytes: int
    targets: list[Device | Partition] = field(default_factory=list, repr=False)

    @property
    def count(self) -> int:
        return len(self.targets)

    @property
    def is_partition(self) -> bool:
        return self.kind != "device"


def _usable_whole(device: Device) -> bool:
    if device.lost or device.partitions():
        return False
    try:
        device.visibility_env()
    except Exception:  # the backend says it cannot be named whole (MIG mode on, say)
        return False
    return True


def families(inventory: Inventory | None = None) -> list[Family]:
    """Every resource family of this host (of ``inventory``, default a fresh discover)."""
    owned = inventory is None
    inv = discover() if inventory is None else inventory
    try:
        found: dict[str, Family] = {}
        for device in inv.devices():
            if device.lost:
                continue
            if _usable_whole(device):
                name = device_family(device)
                fam = found.setdefault(
                    name,
                    Family(name, device.backend, "device", model_slug(device), device.memory_bytes),
                )
                fam.targets.append(device)
                fam.memory_bytes = min(fam.memory_bytes, device.memory_bytes)
                continue
            for part in device.partitions():
                if not part.complete or part.scope != "device":
                    continue
                name = partition_family(device.backend, part.kind, part.profile)
                fam = found.setdefault(
                    name, Family(name, device.backend, part.kind, part.profile, part.memory_bytes)
                )
                fam.targets.append(part)
                fam.memory_bytes = min(fam.memory_bytes, part.memory_bytes)
        return sorted(found.values(), key=lambda f: f.name)
    finally:
        if owned:
            inv.close()


def node_resources(inventory: Inventory | None = None) -> dict[str, float]:
    """The custom resources of this host, as ``ray start --resources`` and ``ray.init``
    take them: ``{"accelpool/nvidia/mig-1g.5gb": 7.0, ...}``."""
    return {f.name: float(f.count) for f in families(inventory) if f.count}


@dataclass(frozen=True)
class Request:
    """What a task asks for: a family name, a partition profile, a device model, or
    at least some memory (the smallest family that has it). ``backend`` narrows it."""

    family: str | None = None
    profile: str | None = None
    model: str | None = None
    min_memory_gib: float | None = None
    backend: str | None = None

    def __post_init__(self) -> None:
        given = [
            k
            for k in ("family", "profile", "model", "min_memory_gib")
            if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise InvalidRequest(
                "an accelpool_ray request names exactly one of a resource family "
                "('accelpool/nvidia/mig-1g.5gb'), profile=, model= or min_memory_gib=; "
                f"got {', '.join(given) or 'none'}"
            )
        if self.family is not None and not self.family.startswith(PREFIX):
            raise InvalidRequest(
                f"{self.family!r} is no accelpool resource: names start with {PREFIX!r} "
                "(profile= or model= ask by profile or model)"
            )
        mem = self.min_memory_gib
        if mem is not None and (isinstance(mem, bool) or not mem > 0):
            raise InvalidRequest(f"min_memory_gib={mem!r}: give a positive number of GiB")

    def describe(self) -> str:
        if self.family is not None:
            what = self.family
        elif self.profile is not None:
            what = f"profile {self.profile}"
        elif self.model is not None:
            what = f"model {self.model}"
        else:
            what = f"at least {self.min_memory_gib:g} GiB"
        return what + (f" on backend {self.backend}" if self.backend else "")

    def matches(self, fam: Family) -> bool:
        if self.backend is not None and fam.backend != self.backend:
            return False
        if self.family is not None:
            return fam.name == self.family
        if self.profile is not None:
            return fam.is_partition and fam.label == self.profile
        if self.model is not None:
            wanted = self.model.lower()
            return not fam.is_partition and wanted in (fam.label.lower(), _slug(wanted).lower())
        assert self.min_memory_gib is not None
        return fam.memory_bytes >= self.min_memory_gib * _GIB

    def choose(self, found: Iterable[Family]) -> list[Family]:
        """The families that serve this request, best first (least memory first)."""
        return sorted((f for f in found if self.matches(f)), key=lambda f: (f.memory_bytes, f.name))


def as_request(
    request: Request | str | None = None,
    *,
    profile: str | None = None,
    model: str | None = None,
    min_memory_gib: float | None = None,
    backend: str | None = None,
) -> Request | None:
    """A :class:`Request` from a positional family/profile name or the keywords."""
    if isinstance(request, Request):
        if any(v is not None for v in (profile, model, min_memory_gib, backend)):
            raise InvalidRequest("pass a Request or keywords, not both")
        return request
    if request is not None and not isinstance(request, str):
        raise InvalidRequest(
            f"a request is a resource name, a profile name or a Request, not {request!r}"
        )
    if request is not None and any(v is not None for v in (profile, model, min_memory_gib)):
        raise InvalidRequest(
            f"ask for exactly one of {request!r}, profile=, model= or min_memory_gib=, not several"
        )
    if request is None and all(v is None for v in (profile, model, min_memory_gib)):
        return None
    if request is not None:
        if request.startswith(PREFIX):
            return Request(family=request, backend=backend)
        return Request(profile=request, backend=backend)
    return Request(profile=profile, model=model, min_memory_gib=min_memory_gib, backend=backend)


def _cluster_families() -> list[Family]:
    """Families named in a running Ray cluster's resources (no memory known: 0)."""
    try:
        import ray

        if not ray.is_initialized():
            return []
        names = [n for n in ray.cluster_resources() if n.startswith(PREFIX)]
    except Exception:
        return []
    out = []
    for name in names:
        backend, _, rest = name[len(PREFIX) :].partition("/")
        kind, dash, label = rest.partition("-")
        # A partition family is "<kind>-<profile>"; a model may hold dashes too, so a
        # name counts as a partition only when its kind is a known partition kind.
        if dash and kind in ("mig", "vgpu", "vnpu", "mim", "smlu", "subdevice", "slice"):
            out.append(Family(name, backend, kind, label, 0))
        else:
            out.append(Family(name, backend, "device", rest, 0))
    return out


def resolve(request: Request, inventory: Inventory | None = None) -> Family:
    """The family that serves ``request``: among this host's (``inventory``) families,
    else among the running Ray cluster's resource names; :class:`NotFound` if none."""
    local = families(inventory)
    chosen = request.choose(local)
    if not chosen and request.min_memory_gib is None:
        chosen = request.choose(_cluster_families())
    if not chosen:
        known = ", ".join(f.name for f in local) or "none"
        raise NotFound(
            f"no accelpool resource serves {request.describe()} (this host has: {known}); "
            "create partitions of that profile, or ask for one that exists"
        )
    return chosen[0]


def options(
    request: Request | str | None = None,
    *,
    profile: str | None = None,
    model: str | None = None,
    min_memory_gib: float | None = None,
    backend: str | None = None,
    inventory: Inventory | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: Mapping[str, float] | None = None,
    runtime_env: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``.options(...)``, ``@ray.remote(...)`` or a Serve
    deployment's ``ray_actor_options``: one unit of the family serving the request.

    Where Ray's own ``num_gpus`` or ``NPU`` resources are asked for too, the
    ``RAY_EXPERIMENTAL_NOSET_*`` variables go into ``runtime_env`` so that Ray does not
    overwrite the visibility :func:`accelpool_ray.acquire` sets.
    """
    req = as_request(
        request, profile=profile, model=model, min_memory_gib=min_memory_gib, backend=backend
    )
    if req is None:
        raise InvalidRequest("options() needs a request: a profile, a model or min_memory_gib")
    fam = resolve(req, inventory)
    res = dict(resources or {})
    res[fam.name] = 1.0
    out: dict[str, Any] = {"resources": res}
    if num_cpus is not None:
        out["num_cpus"] = num_cpus
    if num_gpus is not None:
        out["num_gpus"] = num_gpus
    env = dict(runtime_env or {})
    if num_gpus or any(k in res for k in ("GPU", "NPU")):
        env_vars = dict(env.get("env_vars") or {})
        env_vars.update(NOSET_ENV)
        env["env_vars"] = env_vars
    if env:
        out["runtime_env"] = env
    return out
