"""``kill -9`` between every step of prepare and unprepare, racing claims, refused prepares.

Each crash is a real SIGKILL of an ``accelpool k8s`` process (the crash points of
``accelpool_kubernetes.node`` kill it there). From the state it leaves, both the next
prepare and the next unprepare must complete, and after unprepare nothing may be left:
no partition prepare made, no claim, no journal, no CDI spec. The foreign partition
(made before the driver, claimed by prepare) must survive everything.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from accelpool_kubernetes.node import CRASH_POINTS, Node, holder

import accelpool
from accelpool import claims

NAMES = ["nvidia-0-mig-3g20gb-0", "nvidia-0-mig-1g5gb-6"]
PREPARE = CRASH_POINTS[: CRASH_POINTS.index("unprepare-started")]
UNPREPARE = CRASH_POINTS[len(PREPARE) :]


def k8s(cdi: Path, *args: str, crash: str | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("ACCELPOOL_K8S_CRASH_AT", None)
    if crash:
        env["ACCELPOOL_K8S_CRASH_AT"] = crash
    cmd = [sys.executable, "-m", "accelpool", "--sim", "dgx-a100", "k8s", *args]
    return subprocess.Popen(
        [*cmd, "--cdi-dir", str(cdi)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def killed(proc: subprocess.Popen[str]) -> None:
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _foreign() -> str:
    with accelpool.discover(sim="dgx-a100") as inv:
        return inv.device("nvidia:0").create_partition("1g.5gb", placement=6).id


def _left(cdi: Path, foreign: str) -> dict[str, object]:
    """Everything the driver could leak."""
    with accelpool.discover(sim="dgx-a100") as inv:
        node = Node(inv, cdi_dir=cdi)
        parts = inv.device("nvidia:0").partitions()
        return {
            "partitions": sorted(p.id for p in parts if p.id != foreign),
            "claims": [c.target for c in claims.holders() if (c.holder or "").startswith("k8s:")],
            "journal": node.records(),
            "specs": sorted(p.name for p in cdi.glob("*")) if cdi.exists() else [],
        }


CLEAN = {"partitions": [], "claims": [], "journal": [], "specs": []}


def _prepare_completes(cdi: Path, foreign: str, uid: str) -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        node = Node(inv, cdi_dir=cdi)
        ids = node.prepare(uid, NAMES)
        assert ids == [f"k8s.accelpool.dev/claim={uid}-{n}" for n in NAMES]
        assert node.prepare(uid, NAMES) == ids  # and stays done
        dev = inv.device("nvidia:0")
        made = [(p.profile, p.placement.start) for p in dev.partitions() if p.id != foreign]
        assert made == [("3g.20gb", 0)]  # exactly one, not a second one beside a lost one
        held = sorted(c.target for c in claims.held_by(holder(uid)))
        assert held == sorted(p.id for p in dev.partitions())
        spec = json.loads(node.spec_path(uid).read_text())
        assert [d["name"] for d in spec["devices"]] == [f"{uid}-{n}" for n in NAMES]
        assert node.unprepare(uid)


def _unprepare_completes(cdi: Path, foreign: str, uid: str) -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        Node(inv, cdi_dir=cdi).unprepare(uid)


def _both_ways(tmp_path: Path, foreign: str, uid: str) -> None:
    """From the crashed state: the next prepare completes; and (from the same state
    again) the next unprepare does; either way nothing is left afterwards."""
    state, cdi = Path(os.environ["ACCELPOOL_STATE_DIR"]), tmp_path / "cdi"
    saved = tmp_path / "saved"
    shutil.copytree(state, saved / "state")
    if cdi.exists():
        shutil.copytree(cdi, saved / "cdi")
    _prepare_completes(cdi, foreign, uid)
    assert _left(cdi, foreign) == CLEAN
    for live, copy in ((state, saved / "state"), (cdi, saved / "cdi")):
        shutil.rmtree(live, ignore_errors=True)
        if copy.exists():
            shutil.copytree(copy, live)
    _unprepare_completes(cdi, foreign, uid)
    assert _left(cdi, foreign) == CLEAN
    with accelpool.discover(sim="dgx-a100") as inv:
        assert [p.id for p in inv.device("nvidia:0").partitions()] == [foreign]


@pytest.mark.parametrize("step", PREPARE)
def test_kill_9_during_prepare(tmp_path: Path, step: str) -> None:
    foreign, cdi = _foreign(), tmp_path / "cdi"
    killed(k8s(cdi, "prepare", "--claim-uid", "u-k", "--device", *NAMES, crash=step))
    _both_ways(tmp_path, foreign, "u-k")


@pytest.mark.parametrize("step", UNPREPARE)
def test_kill_9_during_unprepare(tmp_path: Path, step: str) -> None:
    foreign, cdi = _foreign(), tmp_path / "cdi"
    with accelpool.discover(sim="dgx-a100") as inv:
        Node(inv, cdi_dir=cdi).prepare("u-k", NAMES)
    killed(k8s(cdi, "unprepare", "--claim-uid", "u-k", crash=step))
    _both_ways(tmp_path, foreign, "u-k")


def test_two_claims_racing_for_overlapping_devices(tmp_path: Path) -> None:
    """Two processes at once; the 4g.20gb at 0 overlaps the 3g.20gb at 0 and the whole
    GPU (both in claim a). Exactly one wins; the loser changes nothing."""
    cdi = tmp_path / "cdi"
    want = {
        "a": ["nvidia-0-mig-3g20gb-0", "nvidia-0-mig-1g5gb-6"],
        "b": ["nvidia-0-mig-4g20gb-0"],
    }
    procs = {u: k8s(cdi, "prepare", "--claim-uid", u, "--device", *n) for u, n in want.items()}
    done = {u: (p.communicate(timeout=60), p.returncode) for u, p in procs.items()}
    winners = [u for u, (_, rc) in done.items() if rc == 0]
    assert len(winners) == 1, done
    (loser,) = set(want) - set(winners)
    (_, err), rc = done[loser]
    assert rc == 1 and "not offered on this node" in err and "Traceback" not in err
    with accelpool.discover(sim="dgx-a100") as inv:
        node = Node(inv, cdi_dir=cdi)
        profiles = sorted(p.profile for p in inv.device("nvidia:0").partitions())
        expect = {"a": ["1g.5gb", "3g.20gb"], "b": ["4g.20gb"]}[winners[0]]
        assert profiles == expect
        assert claims.held_by(holder(loser)) == []
        assert [r["uid"] for r in node.records()] == winners
        assert not node.spec_path(loser).exists() and node.spec_path(winners[0]).exists()


def test_prepare_refused_by_the_backend_changes_nothing(tmp_path: Path) -> None:
    """Both names are offered, but not together (a stale allocation): the first one is
    created, the second is refused, and the first is destroyed again."""
    with accelpool.discover(sim="dgx-a100") as inv:
        node = Node(inv, cdi_dir=tmp_path / "cdi")
        with pytest.raises(accelpool.InsufficientCapacity):
            node.prepare("u-r", ["nvidia-0-mig-3g20gb-0", "nvidia-0-mig-4g20gb-0"])
        assert inv.device("nvidia:0").partitions() == []
        assert node.records() == [] and claims.held_by(holder("u-r")) == []
        assert not node.spec_path("u-r").exists()


def test_prepare_of_a_target_someone_else_holds_changes_nothing(tmp_path: Path) -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        part = inv.device("nvidia:0").create_partition("1g.5gb", placement=6)
        claims.claim(part, holder="ray:lease-1", owner="a ray actor")
        node = Node(inv, cdi_dir=tmp_path / "cdi")
        with pytest.raises(accelpool.InUse):
            node.prepare("u-h", ["nvidia-0-mig-3g20gb-0", "nvidia-0-mig-1g5gb-6"])
        assert [p.id for p in inv.device("nvidia:0").partitions()] == [part.id]
        assert claims.lookup(part).holder == "ray:lease-1"
        assert node.records() == [] and not node.spec_path("u-h").exists()
