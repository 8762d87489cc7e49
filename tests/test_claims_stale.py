"""Claims whose holder cannot be proven alive are stale; a broken database is named."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest

import accelpool
from accelpool.cli.app import main
from accelpool.session import ClaimStore, open_session, process_start_time
from accelpool.testing import toy_inventory

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def _plant(pid: int, start_time: int | None, target: str = "toy:toy-0") -> ClaimStore:
    """Write a claims row by hand, as a careless or hostile user could."""
    store = ClaimStore()
    store.release(store.acquire("toy:x", "toy:x", "device"))  # makes the database
    con = sqlite3.connect(store.path)
    con.execute(
        "INSERT INTO claims (host, target, device, kind, pid, start_time, opened_at, token) "
        "VALUES (?, ?, ?, 'device', ?, ?, ?, ?)",
        (store.host, target, target, pid, start_time, time.time(), uuid.uuid4().hex),
    )
    con.commit()
    con.close()
    return store


@needs_proc
@pytest.mark.parametrize("pid", [1, os.getpid()], ids=["init", "self"])
def test_a_claim_without_start_time_blocks_nothing(pid: int) -> None:
    _plant(pid, None)
    device = toy_inventory().device("toy:0")
    with open_session(device, isolate=False) as s:  # taken over, not InUse forever
        assert s.claim is not None and s.claim.start_time is not None


@needs_proc
def test_reap_drops_unprovable_and_reused_pid_claims(capsys: pytest.CaptureFixture[str]) -> None:
    store = _plant(1, None)
    _plant(os.getpid(), (process_start_time(os.getpid()) or 0) + 7, target="toy:toy-1")
    assert [c.holder_alive() for c in store.claims()] == [False, False]
    assert main(["claims"]) == 0
    assert capsys.readouterr().out.count("no (stale)") == 2
    assert main(["claims", "--reap"]) == 0
    assert "Dropped 2 claim(s)" in capsys.readouterr().out
    assert store.claims() == []


@needs_proc
def test_a_claim_from_another_boot_is_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    store = ClaimStore()
    target = toy_inventory().device("toy:0")
    with open_session(target, isolate=False) as s:
        assert s.claim is not None and s.claim.holder_alive()
        if s.claim.boot_id is None:
            pytest.skip("no boot id on this system")
        monkeypatch.setattr("accelpool.session._claims._BOOT_ID", ["another-boot"])
        assert not s.claim.holder_alive()
        assert store.holder(target.id) is None


def _main_err(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def test_a_corrupt_database_gives_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    store = ClaimStore()
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(b"this is not sqlite\n" * 400)
    code, err = _main_err(["claims"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert str(store.path) in err and "corrupt" in err and "internal error" not in err
    with pytest.raises(accelpool.AccelPoolError, match="corrupt"):
        open_session(toy_inventory().device("toy:0"), isolate=False)


def test_a_database_of_another_schema_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    store = ClaimStore()
    store.path.parent.mkdir(parents=True)
    con = sqlite3.connect(store.path)
    con.execute("CREATE TABLE claims (who TEXT, what TEXT)")
    con.commit()
    con.close()
    code, err = _main_err(["claims"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert str(store.path) in err and "schema" in err and "internal error" not in err
    with pytest.raises(accelpool.AccelPoolError, match="schema"):
        open_session(toy_inventory().device("toy:0"), isolate=False)


def test_a_newer_schema_is_refused_not_rewritten() -> None:
    store = ClaimStore()
    store.path.parent.mkdir(parents=True)
    con = sqlite3.connect(store.path)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    with pytest.raises(accelpool.AccelPoolError, match="version 99"):
        store.claims()


def test_a_locked_database_fails_fast_with_a_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("accelpool.session._claims.LOCK_TIMEOUT_S", 0.2)
    store = ClaimStore()
    store.release(store.acquire("toy:x", "toy:x", "device"))
    locker = sqlite3.connect(store.path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        code, err = _main_err(["claims"], capsys)
        assert time.monotonic() - started < 5
        assert code == 1 and err.count("\n") == 1, err
        assert str(store.path) in err and "locked" in err and "internal error" not in err
        with pytest.raises(accelpool.AccelPoolError, match="locked"):
            open_session(toy_inventory().device("toy:0"), isolate=False)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    # Once the other transaction ends, claims work again.
    with open_session(toy_inventory().device("toy:0"), isolate=False):
        pass


def test_a_short_lock_is_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("accelpool.session._claims.LOCK_TIMEOUT_S", 5.0)
    store = ClaimStore()
    store.release(store.acquire("toy:x", "toy:x", "device"))
    locker = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    timer = threading.Timer(0.2, lambda: locker.execute("ROLLBACK"))
    timer.start()
    try:
        assert store.claims() == []
    finally:
        timer.join()
        locker.close()


def test_a_claims_directory_that_is_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    store = ClaimStore()
    store.path.parent.parent.mkdir(parents=True, exist_ok=True)
    store.path.parent.write_text("not a directory")
    code, err = _main_err(["claims"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert str(store.path.parent) in err and "not a directory" in err
    with pytest.raises(accelpool.AccelPoolError, match="claims directory"):
        open_session(toy_inventory().device("toy:0"), isolate=False)
