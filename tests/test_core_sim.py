"""Fleet files, presets and the shared state store."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

import accelpool
from accelpool.sim import StateStore, load_fleet, preset_names


def test_presets_named_by_the_design_exist() -> None:
    assert {
        "dgx-a100",
        "dgx-h100",
        "hgx-h200",
        "atlas-800-910b",
        "atlas-300i-310p",
        "mlu370-x8",
        "mixed",
    } <= set(preset_names())
    fleet = load_fleet("dgx-a100")
    assert [(d.backend, d.model, d.count) for d in fleet.devices] == [
        ("nvidia", "A100-SXM4-40GB", 8)
    ]
    assert set(load_fleet("mixed").backends()) == {"nvidia", "ascend", "cambricon"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("devices = [", "not valid TOML"),
        ("name = 'x'", "no [[devices]]"),
        ("[[devices]]\nmodel = 'm'", "needs a 'backend'"),
        ("[[devices]]\nbackend = 'b'\nmodel = 'm'\ncount = 0", "positive integer"),
    ],
)
def test_bad_fleet_files_get_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    with pytest.raises(accelpool.InvalidRequest, match=message.replace("[", r"\[")):
        load_fleet(str(path))


def test_unknown_fleet_names_the_presets() -> None:
    with pytest.raises(accelpool.NotFound, match="dgx-a100"):
        load_fleet("no-such-fleet")


def test_fleet_file_state_is_keyed_by_path(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.toml").write_text("[[devices]]\nbackend='toy'\nmodel='m'\n")
    a, b = load_fleet(str(tmp_path / "a" / "f.toml")), load_fleet(str(tmp_path / "b" / "f.toml"))
    assert a.name == b.name == "f"
    assert a.state_root() != b.state_root()


def test_a_failed_transaction_leaves_the_state_untouched(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.json")
    with store.transaction() as s:
        s["kept"] = 1
    with pytest.raises(RuntimeError), store.transaction() as s:
        s["kept"] = 2
        raise RuntimeError("half way")
    assert store.read() == {"kept": 1}


def _bump(path: str, times: int) -> None:
    store = StateStore(Path(path))
    for _ in range(times):
        with store.transaction() as s:
            s["n"] = s.get("n", 0) + 1


def test_transactions_serialise_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_bump, args=(path, 50)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert StateStore(Path(path)).read() == {"n": 150}


def test_sim_reset_forgets_the_fleet(tmp_path: Path) -> None:
    fleet = load_fleet("dgx-a100")
    with fleet.state().transaction() as s:
        s["nvidia"] = {"anything": True}
    (fleet.state_root() / "nvidia").mkdir()
    assert fleet.reset() is True
    assert fleet.state().read() == {}
    assert not (fleet.state_root() / "nvidia").exists()
    assert fleet.reset() is False
