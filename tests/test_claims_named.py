"""Named, durable claim holders (``accelpool.claims``): not processes, same exclusivity."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta

import pytest

import accelpool
from accelpool import claims
from accelpool.cli.app import main
from accelpool.session import ClaimStore, open_session
from accelpool.testing import toy_inventory


def test_a_named_claim_outlives_its_process_and_excludes_sessions() -> None:
    # Made by a process that then exits: the claim is the holder's, not the process's.
    script = textwrap.dedent(
        """
        from accelpool import claims
        c = claims.claim("toy:toy-0", device="toy:toy-0", holder="k8s:uid-1",
                         owner="pod default/llm-0")
        print(c.token)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    (held,) = claims.holders()
    assert (held.holder, held.owner, held.pid, held.kind) == (
        "k8s:uid-1",
        "pod default/llm-0",
        0,
        "device",
    )
    assert held.holder_alive() and claims.lookup("toy:toy-0") == held
    device = toy_inventory().device("toy:0")
    with pytest.raises(accelpool.InUse, match=r"k8s:uid-1 \(pod default/llm-0\)") as info:
        open_session(device, isolate=False)
    assert info.value.holder == "k8s:uid-1"  # type: ignore[attr-defined]
    # A device and its partitions exclude each other, as for sessions.
    part = device.create_partition("2s")
    with pytest.raises(accelpool.InUse, match="holds whole"):
        claims.claim(part, holder="ray:actor-7")
    assert claims.reap() == 0  # a named claim is not stale because its creator ended
    assert claims.release("k8s:uid-1") == 1
    assert claims.holders() == [] and claims.release("k8s:uid-1") == 0
    with (
        open_session(device, isolate=False),
        pytest.raises(accelpool.InUse, match=f"pid {os.getpid()}"),
    ):
        claims.claim(part, holder="ray:actor-7")


def test_same_holder_renews_and_never_conflicts_with_itself() -> None:
    inv = toy_inventory()
    device = inv.device("toy:0")
    part = device.create_partition("2s")
    first = claims.claim(part, holder="ray:a", owner="actor A", expires=60)
    again = claims.claim(part, holder="ray:a", owner="actor A, renewed", expires=600)
    assert again.token == first.token and again.owner == "actor A, renewed"
    assert again.expires_at is not None and first.expires_at is not None
    assert again.expires_at > first.expires_at + 500
    whole = claims.claim(device, holder="ray:a")  # its own partition is no conflict
    assert {c.target for c in claims.held_by("ray:a")} == {part.id, device.id}
    with pytest.raises(accelpool.InUse, match="ray:a"):
        claims.claim(part, holder="ray:b")
    assert claims.release(whole) == 1
    assert claims.release("ray:a", target=part.id) == 1 and claims.held_by("ray:a") == []


def test_an_expired_named_claim_is_stale() -> None:
    device = toy_inventory().device("toy:0")
    store = ClaimStore()
    gone = store.acquire(device.id, device.id, "device", holder="k8s:old", expires_at=1.0)
    assert not gone.holder_alive()
    c = claims.claim(device, holder="k8s:new", expires=datetime.now() + timedelta(hours=1))
    assert [x.holder for x in claims.holders()] == ["k8s:new"]
    assert c.expires_at is not None and c.expires_at > time.time() + 3000
    store.release(c)
    store.acquire(device.id, device.id, "device", holder="k8s:old", expires_at=1.0)
    assert claims.reap() == 1 and claims.holders() == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"holder": ""}, "non-empty"),
        ({"holder": "has space"}, "without spaces"),
        ({"holder": "pid:1"}, "reserved"),
        ({"holder": "k8s:x", "owner": "two\nlines"}, "one printable line"),
        ({"holder": "k8s:x", "expires": -5}, "positive number"),
        ({"holder": "k8s:x", "expires": float("nan")}, "positive number"),
        ({"holder": "k8s:x", "expires": datetime(2000, 1, 1)}, "already past"),
        ({"holder": "k8s:x", "expires": "soon"}, "datetime, a timedelta or seconds"),
    ],
)
def test_bad_holder_arguments_are_refused(kwargs: dict[str, object], match: str) -> None:
    device = toy_inventory().device("toy:0")
    with pytest.raises(accelpool.InvalidRequest, match=match):
        claims.claim(device, **kwargs)  # type: ignore[arg-type]
    assert claims.holders() == []


def test_claims_cli_lists_and_releases_named_holders(capsys: pytest.CaptureFixture[str]) -> None:
    claims.claim("toy:toy-1", device="toy:toy-1", holder="k8s:uid-9", owner="pod ns/p")
    assert main(["claims"]) == 0
    out = capsys.readouterr().out
    assert "k8s:uid-9" in out and "pod ns/p" in out and "toy:toy-1" in out
    assert main(["claims", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc["holder"] == "k8s:uid-9" and doc["alive"] is True and doc["pid"] is None
    assert main(["claims", "--release", "k8s:uid-9"]) == 0
    out = capsys.readouterr().out
    assert "Released 1 claim(s) of k8s:uid-9: toy:toy-1" in out
    assert claims.holders() == []
    assert main(["claims", "--release", "pid:1"]) == 1
    assert "process holder" in capsys.readouterr().err


def test_a_first_schema_database_is_upgraded_in_place() -> None:
    store = ClaimStore()
    store.path.parent.mkdir(parents=True)
    con = sqlite3.connect(store.path)
    con.execute(
        "CREATE TABLE claims (host TEXT NOT NULL, target TEXT NOT NULL, device TEXT NOT NULL, "
        "kind TEXT NOT NULL, pid INTEGER NOT NULL, start_time INTEGER, opened_at REAL NOT NULL, "
        "token TEXT NOT NULL, PRIMARY KEY (host, target))"
    )
    con.commit()
    con.close()
    c = claims.claim("toy:toy-0", device="toy:toy-0", holder="k8s:u")
    assert claims.holders() == [c]
