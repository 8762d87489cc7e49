"""``accelpool plan``: fewest devices, then fewest changes, claimed partitions untouched."""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from pathlib import Path

import pytest

import accelpool
from accelpool import claims
from accelpool.layout.demand import configurations
from accelpool.testing import run_cli

pytest.importorskip("highspy")


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ACCELPOOL_STATE_DIR", str(tmp_path / "state"))
    return dict(os.environ)


def _demand(tmp_path: Path, work: list[dict[str, object]]) -> str:
    f = tmp_path / "demand.toml"
    f.write_text(
        "".join(
            "[[workload]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in w.items()) + "\n"
            for w in work
        )
    )
    return str(f)


def _held(sim: str) -> list[Counter[str]]:
    inv = accelpool.discover(sim=sim)
    try:
        return [Counter(p.profile for p in d.partitions()) for d in inv.devices()]
    finally:
        inv.close()


def _fewest_by_search(sim: str, need: Counter[str]) -> int:
    """The fewest GPUs covering ``need``, by trying every multiset of maximal configurations."""
    inv = accelpool.discover(sim=sim)
    profiles = [p for p in inv.device("nvidia:0").profiles() if p.placements]
    inv.close()
    configs = configurations(profiles)
    maximal = [c for c in configs if c and not any(o != c and not (c - o) for o in configs)]
    for k in range(1, 9):
        for combo in itertools.combinations_with_replacement(maximal, k):
            if not need - sum(combo, Counter()):
                return k
    raise AssertionError("no cover on 8 GPUs")


@pytest.mark.parametrize(
    "need",
    [
        {"3g.20gb": 3, "2g.10gb": 2, "1g.5gb": 3},
        {"4g.20gb": 2, "2g.10gb": 3, "1g.5gb": 2},
        {"7g.40gb": 1, "3g.20gb": 1, "1g.10gb": 5},
    ],
)
def test_plan_uses_the_optimal_gpu_count_and_apply_serves_the_demand(
    env: dict[str, str], tmp_path: Path, need: dict[str, int]
) -> None:
    demand = _demand(tmp_path, [{"count": n, "profile": p} for p, n in need.items()])
    planned = tmp_path / "planned.toml"
    out = run_cli("--sim", "dgx-a100", "plan", demand, "--out", str(planned), "--json", env=env)
    assert out.code == 0, out.err
    got = json.loads(out.out)
    assert got["devices_used"] == _fewest_by_search("dgx-a100", Counter(need))
    assert got["optimal"] is True and got["gap"] == 0
    assert run_cli("--sim", "dgx-a100", "apply", str(planned), env=env).code == 0
    held = _held("dgx-a100")
    assert sum(1 for c in held if c) == got["devices_used"]
    assert not Counter(need) - sum(held, Counter())  # every workload has its partition
    again = run_cli("--sim", "dgx-a100", "apply", str(planned), env=env)
    assert "No change." in again.out


def test_plan_keeps_matching_partitions_and_never_touches_claimed_ones(
    env: dict[str, str], tmp_path: Path
) -> None:
    inv = accelpool.discover(sim="dgx-a100")
    d2, d5 = inv.device("nvidia:2"), inv.device("nvidia:5")
    d2.create_partition("3g.20gb", 0)
    d2.create_partition("3g.20gb", 4)
    held = d5.create_partition("4g.20gb", 0)
    claims.claim(held, holder="ray:actor-1", owner="serve")
    inv.close()
    # Two 3g.20gb already on GPU 2 serve two; the claimed 4g.20gb serves none.
    demand = _demand(tmp_path, [{"count": 3, "profile": "3g.20gb"}])
    planned = tmp_path / "planned.toml"
    out = run_cli("--sim", "dgx-a100", "plan", demand, "--out", str(planned), "--json", env=env)
    assert out.code == 0, out.err
    got = json.loads(out.out)
    lay = {x["device"]: Counter(x["partitions"]) for x in got["layouts"]}
    assert lay["nvidia:2"] == Counter({"3g.20gb": 2})  # kept, not remade elsewhere
    # The third 3g.20gb fits beside the claimed 4g.20gb: no new GPU, one change.
    assert got["devices_used"] == 2 and got["changes"] == 1
    assert lay["nvidia:5"] == Counter({"4g.20gb": 1, "3g.20gb": 1})
    plan = run_cli("--sim", "dgx-a100", "apply", str(planned), "--dry-run", "--json", env=env)
    assert all(not d["destroy"] for d in json.loads(plan.out)["devices"])
    assert run_cli("--sim", "dgx-a100", "apply", str(planned), env=env).code == 0
    after = _held("dgx-a100")
    assert after[5] == Counter({"4g.20gb": 1, "3g.20gb": 1})
    assert held.id in {
        p.id for p in accelpool.discover(sim="dgx-a100").device("nvidia:5").partitions()
    }


def test_plan_across_hosts_then_apply_per_host(env: dict[str, str], tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        '[[host]]\nname = "a100-node"\nsim = "dgx-a100"\n\n'
        '[[host]]\nname = "h200-node"\nsim = "hgx-h200"\n'
    )
    # 15 GiB and 30% of a GPU: a 3g.20gb on an A100-40GB, a 3g.71gb on an H200; two each.
    demand = _demand(tmp_path, [{"count": 20, "memory_gib": 15, "compute": 0.3}])
    planned = tmp_path / "planned.toml"
    out = run_cli("plan", demand, "--hosts", str(hosts), "--out", str(planned), "--json", env=env)
    assert out.code == 0, out.err
    got = json.loads(out.out)
    assert got["devices_used"] == 10 and got["gap"] == 0
    assert {x["host"] for x in got["layouts"]} == {"a100-node", "h200-node"}
    for host, sim in (("a100-node", "dgx-a100"), ("h200-node", "hgx-h200")):
        res = run_cli("--sim", sim, "apply", str(planned), "--host", host, env=env)
        assert res.code == 0, res.err
    served = sum(c["3g.20gb"] for c in _held("dgx-a100")) + sum(
        c["3g.71gb"] for c in _held("hgx-h200")
    )
    assert served == 20


def test_plan_bad_input_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    big = _demand(tmp_path, [{"count": 17, "profile": "3g.20gb"}])
    out = run_cli("--sim", "dgx-a100", "plan", big, env=env)
    assert out.code == 1 and "does not fit" in out.err and "Traceback" not in out.err
    bad = tmp_path / "bad.toml"
    bad.write_text("[[workload]]\ncount = 2\n")
    out = run_cli("--sim", "dgx-a100", "plan", str(bad), env=env)
    assert out.code == 1 and "profile" in out.err and out.err.count("\n") == 1
    out = run_cli("--sim", "dgx-a100", "plan", big, "--hosts", str(bad), env=env)
    assert out.code == 1 and "not both" in out.err
