"""Sessions under a caller's claim (``open_session(claim=...)``) and process-bound names."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import accelpool
from accelpool import claims
from accelpool.session import open_session
from accelpool.testing import toy_inventory


def test_a_session_runs_under_a_named_claim_and_leaves_it_held() -> None:
    device = toy_inventory().device("toy:0")
    c = claims.claim(device, holder="ray:actor-1", owner="ray actor A")
    # Without the claim, the target is someone else's.
    with pytest.raises(accelpool.InUse, match="ray:actor-1"):
        open_session(device, isolate=False)
    with open_session(device, isolate=False, claim=c) as s:
        assert s.claim == c
        assert [x.holder for x in claims.holders()] == ["ray:actor-1"]  # no process claim
    assert s.claim is None
    assert claims.lookup(device) == c  # closing leaves the holder's claim in place
    assert claims.release(c) == 1


def test_a_wrong_or_stale_claim_is_refused_in_one_line() -> None:
    inv = toy_inventory()
    d0, d1 = inv.device("toy:0"), inv.device("toy:1")
    c = claims.claim(d0, holder="ray:actor-2")
    with pytest.raises(accelpool.InvalidRequest, match="claim on toy:toy-0, not on toy:toy-1"):
        open_session(d1, isolate=False, claim=c)
    claims.release(c)
    with pytest.raises(accelpool.InvalidRequest, match="no longer held"):
        open_session(d0, isolate=False, claim=c)
    with pytest.raises(accelpool.InvalidRequest, match="takes an accelpool Claim"):
        open_session(d0, isolate=False, claim="ray:actor-2")  # type: ignore[arg-type]
    assert claims.holders() == []


def test_a_process_bound_named_claim_ends_with_its_process() -> None:
    script = textwrap.dedent(
        """
        from accelpool import claims
        c = claims.claim("toy:toy-0", device="toy:toy-0", holder="ray:worker-9",
                         owner="ray task", bound_to_process=True)
        print(c.pid)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, timeout=60, capture_output=True, text=True
    )
    (held,) = claims.holders()
    assert held.holder == "ray:worker-9" and held.pid == int(out.stdout) > 0
    assert not held.holder_alive()  # its process has ended
    assert claims.lookup("toy:toy-0") is None
    # The next opener takes it over.
    device = toy_inventory().device("toy:0")
    with open_session(device, isolate=False) as s:
        assert s.claim is not None and s.claim.holder is None
    mine = claims.claim(device, holder="ray:worker-10", bound_to_process=True)
    assert mine.holder_alive() and mine.to_json()["pid"] == mine.pid
    assert claims.release("ray:worker-10") == 1
