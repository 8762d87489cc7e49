"""Node prepare / unprepare of Kubernetes resource claims.

``prepare`` takes, for one claim uid, the allocated device names: it finds the device
or live partition each stands for, or creates the partition (at exactly the allocated
placement), takes a durable named claim ``k8s:<uid>`` on it, writes the claim's CDI spec
and returns the CDI device ids. ``unprepare`` releases the claims, destroys only what
prepare created and removes the spec.

Every step is written to a journal (one JSON file per claim, replaced atomically)
before it is taken, and one lock serialises prepares and unprepares of the host, so
a ``kill -9`` at any point leaves a journal the next prepare or unprepare completes:
a partition whose creation was cut short is found again as the one that was not there
before. A prepare that fails undoes what it did and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from accelpool import claims
from accelpool.container import container_edits
from accelpool.errors import AccelPoolError, InvalidRequest, NotFound
from accelpool.inventory import Device, Inventory, Partition
from accelpool.statedir import state_dir
from accelpool_kubernetes.catalog import LogicalDevice, physical_device
from accelpool_kubernetes.cdi import build_spec, dump, spec_file, write_atomic
from accelpool_kubernetes.names import DEFAULT_DRIVER, is_dns_label

DEFAULT_CDI_DIR = Path("/var/run/cdi")


def holder(uid: str) -> str:
    return f"k8s:{uid}"


@dataclass
class Node:
    """The node side of the driver: where its journal and CDI specs live."""

    inventory: Inventory
    driver: str = DEFAULT_DRIVER
    cdi_dir: Path = DEFAULT_CDI_DIR
    state: Path | None = None

    def __post_init__(self) -> None:
        self.state = Path(self.state) if self.state else state_dir() / "kubernetes" / self.driver
        self.cdi_dir = Path(self.cdi_dir)
        (self.state / "claims").mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- journal ---------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return f"k8s.{self.driver}/claim"

    def _journal(self, uid: str) -> Path:
        assert self.state is not None
        return self.state / "claims" / f"{uid}.json"

    def _load(self, uid: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._journal(uid).read_text()))
        except FileNotFoundError:
            return None

    def _save(self, rec: dict[str, Any]) -> None:
        write_atomic(self._journal(rec["uid"]), json.dumps(rec, indent=1))

    def _drop(self, uid: str) -> None:
        self._journal(uid).unlink(missing_ok=True)

    def spec_path(self, uid: str) -> Path:
        return spec_file(self.cdi_dir, f"{self.kind}_{uid}")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        assert self.state is not None
        with FileLock(str(self.state / "lock"), timeout=60):
            yield

    def records(self) -> list[dict[str, Any]]:
        assert self.state is not None
        out = []
        for f in sorted((self.state / "claims").glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(f.read_text()))
        return out

    def bindings(self) -> dict[str, str]:
        """Logical device name -> partition id, for partitions prepare created."""
        return {
            e["name"]: e["target"]
            for r in self.records()
            for e in r["devices"]
            if e.get("created") and e.get("target")
        }

    # -- prepare ---------------------------------------------------------------------
    def prepare(
        self, uid: str, names: Sequence[str], *, namespace: str = "", claim_name: str = ""
    ) -> list[str]:
        """Prepare claim ``uid`` for the allocated device ``names``; its CDI device ids."""
        uid = _check_uid(uid)
        names = list(dict.fromkeys(names))
        if not names:
            raise InvalidRequest("name at least one allocated device (--device NAME)")
        for n in names:
            if not is_dns_label(n):
                raise InvalidRequest(f"device name {n!r} is not a DNS label as published")
        with self._locked():
            rec = self._load(uid)
            if rec is not None and rec["status"] == "unpreparing":
                self._unprepare(rec)
                rec = None
            if rec is not None and [e["name"] for e in rec["devices"]] != names:
                held = ", ".join(e["name"] for e in rec["devices"])
                raise InvalidRequest(
                    f"claim {uid} is already prepared with {held}; "
                    f"unprepare it first (accelpool k8s unprepare --claim-uid {uid})"
                )
            if rec is not None and rec["status"] == "prepared" and self.spec_path(uid).exists():
                return list(rec["cdi"])
            if rec is None:
                rec = {
                    "uid": uid,
                    "namespace": namespace,
                    "name": claim_name,
                    "status": "preparing",
                    "devices": [{"name": n, "state": "planned"} for n in names],
                    "cdi": [],
                }
                self._plan(rec)
                self._save(rec)
                _crash_point("after-plan")
            try:
                for entry in rec["devices"]:
                    self._take(rec, entry)
                ids = self._write_spec(rec)
                _crash_point("after-spec")
            except BaseException:
                with contextlib.suppress(AccelPoolError):
                    self._unprepare(rec)
                raise
            rec["status"], rec["cdi"] = "prepared", ids
            self._save(rec)
            return ids

    def _find(self, name: str) -> tuple[Device, LogicalDevice]:
        bindings = self.bindings()
        for dev in self.inventory.devices():
            if not name.startswith(f"{dev.backend}-{dev.index}"):
                continue
            pd = physical_device(dev, bindings)
            for ld in pd.devices if pd else ():
                if ld.name == name:
                    return dev, ld
        raise NotFound(
            f"device {name} is not offered on this node now (taken, or never published); "
            "list them with 'accelpool k8s slices'"
        )

    def _plan(self, rec: dict[str, Any]) -> None:
        """Resolve every name before anything changes; a name that is gone fails here."""
        for entry in rec["devices"]:
            dev, ld = self._find(entry["name"])
            entry["device"] = dev.id
            entry["profile"] = ld.profile.name if ld.profile else None
            entry["placement"] = ld.placement.start if ld.placement else None
            entry["target"] = ld.target_id
            entry["created"] = False

    def _take(self, rec: dict[str, Any], entry: dict[str, Any]) -> None:
        if entry["state"] == "creating":
            self._recover(entry)
        if entry["state"] == "planned":
            if entry.get("target") is None:
                dev = self.inventory.device(entry["device"])
                entry["before"] = sorted(p.id for p in dev.partitions())
                entry["state"] = "creating"
                self._save(rec)
                _crash_point("before-create")
                part = dev.create_partition(entry["profile"], placement=entry["placement"])
                _crash_point("after-create")
                entry["target"], entry["created"] = part.id, True
            entry["state"] = "made"
            self._save(rec)
            _crash_point("before-claim")
        if entry["state"] == "made":
            claims.claim(
                entry["target"],
                holder=holder(rec["uid"]),
                device=entry["device"],
                owner=f"resourceclaim {rec['namespace']}/{rec['name']} ({entry['name']})",
            )
            entry["state"] = "claimed"
            self._save(rec)
            _crash_point("after-claim")

    def _recover(self, entry: dict[str, Any]) -> None:
        """A create cut short: the partition is the matching one that was not there before."""
        dev = self.inventory.device(entry["device"])
        for p in dev.partitions():
            if p.id in entry.get("before", []) or p.profile != entry["profile"]:
                continue
            if entry["placement"] is not None and (
                p.placement is None or p.placement.start != entry["placement"]
            ):
                continue
            if claims.lookup(p) is None:
                entry["target"], entry["created"], entry["state"] = p.id, True, "made"
                return
        entry["state"], entry["target"] = "planned", None

    def _target(self, target_id: str) -> Device | Partition:
        return self.inventory.target(target_id)

    def _write_spec(self, rec: dict[str, Any]) -> list[str]:
        devices = {
            f"{rec['uid']}-{e['name']}": container_edits(self._target(e["target"]))
            for e in rec["devices"]
        }
        write_atomic(self.spec_path(rec["uid"]), dump(build_spec(self.kind, devices)))
        return [f"{self.kind}={n}" for n in devices]

    # -- unprepare -------------------------------------------------------------------
    def unprepare(self, uid: str) -> bool:
        """Undo prepare of claim ``uid``; False when there was nothing to undo."""
        uid = _check_uid(uid)
        with self._locked():
            rec = self._load(uid)
            if rec is None:
                self.spec_path(uid).unlink(missing_ok=True)
                return claims.release(holder(uid)) > 0
            self._unprepare(rec)
            return True

    def _unprepare(self, rec: dict[str, Any]) -> None:
        rec["status"] = "unpreparing"
        self._save(rec)
        self.spec_path(rec["uid"]).unlink(missing_ok=True)
        _crash_point("unprepare-started")
        for entry in reversed(rec["devices"]):
            if entry.get("state") == "creating":
                self._recover(entry)
            target = entry.get("target")
            if target:
                claims.release(holder(rec["uid"]), target=target)
                _crash_point("after-release")
            if target and entry.get("created"):
                with contextlib.suppress(NotFound):
                    part = self.inventory.partition(target)
                    part.destroy()
                _crash_point("after-destroy")
                entry["created"] = False
                self._save(rec)
        claims.release(holder(rec["uid"]))
        _crash_point("before-drop")
        self._drop(rec["uid"])


#: every point between two steps of prepare and of unprepare, in order
CRASH_POINTS = (
    "after-plan",
    "before-create",
    "after-create",
    "before-claim",
    "after-claim",
    "after-spec",
    "unprepare-started",
    "after-release",
    "after-destroy",
    "before-drop",
)


def _crash_point(step: str) -> None:
    """Tests only: ``ACCELPOOL_K8S_CRASH_AT=<step>`` kills this process there (``kill -9``)."""
    if os.environ.get("ACCELPOOL_K8S_CRASH_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _check_uid(uid: str) -> str:
    if not uid or len(uid) > 128 or not all(c.isalnum() or c == "-" for c in uid):
        raise InvalidRequest(
            f"claim uid {uid!r} is not a Kubernetes uid; pass metadata.uid of the ResourceClaim"
        )
    return uid


def default_cdi_dir() -> Path:
    return Path(os.environ.get("ACCELPOOL_CDI_DIR", str(DEFAULT_CDI_DIR)))
