"""A storm: processes creating, destroying and listing MIG partitions on one simulated
dgx-a100, some killed with SIGKILL midway; the fleet stays consistent (issue 10).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import accelpool

#: One worker: random creates, destroys of its own partitions and listings for a few
#: seconds, logging each outcome as a JSON line before going on.
_WORKER = r"""
import json, random, sys, time
import accelpool
from accelpool.errors import InsufficientCapacity, InUse

log = open(sys.argv[1], "a", buffering=1)
rng = random.Random(int(sys.argv[2]))
until = time.monotonic() + float(sys.argv[3])
inv = accelpool.discover(sim="dgx-a100", backends=["nvidia"])
profiles = ["1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb", "1g.10gb"]
mine = []

def say(**doc):
    log.write(json.dumps(doc) + "\n")

while time.monotonic() < until:
    dev = inv.device(f"nvidia:{rng.randrange(2)}")  # two GPUs: every worker contends
    op = rng.random()
    try:
        if op < 0.45:
            say(op="create-start")
            part = dev.create_partition(rng.choice(profiles))
            mine.append(part.id)
            say(op="created", id=part.id)
        elif op < 0.8 and mine:
            victim = mine.pop(rng.randrange(len(mine)))
            say(op="destroy-start", id=victim)
            inv.partition(victim).destroy()
            say(op="destroyed", id=victim)
        else:
            for d in inv.devices():
                d.partitions()
            say(op="listed")
    except (InsufficientCapacity, InUse) as e:  # a full GPU: the fleet's state, not a fault
        say(op="full", error=type(e).__name__)
    except Exception as e:
        say(op="error", error=type(e).__name__, message=str(e))
"""

WORKERS, KILLED, SECONDS = 4, 2, 4.0


def test_a_storm_with_kills_leaves_a_consistent_fleet(tmp_path: Path) -> None:
    rng = random.Random()
    logs = [tmp_path / f"worker{i}.jsonl" for i in range(WORKERS)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(log), str(rng.randrange(1 << 30)), str(SECONDS)],
            stderr=subprocess.PIPE,
        )
        for log in logs
    ]
    victims = rng.sample(range(WORKERS), KILLED)
    time.sleep(1.5)  # past start-up, into the storm
    for i in victims:
        time.sleep(rng.uniform(0.2, 1.0))
        procs[i].send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(timeout=60)
    for i, p in enumerate(procs):
        if i not in victims:
            assert p.returncode == 0, p.stderr.read() if p.stderr else ""
        if p.stderr:
            p.stderr.close()

    docs = [[json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            for log in logs]  # fmt: skip
    errors = [d for worker in docs for d in worker if d["op"] == "error"]
    assert errors == [], errors  # no call failed, least of all blaming the caller
    assert sum(d["op"] == "created" for worker in docs for d in worker) > 0

    inv = accelpool.discover(sim="dgx-a100", backends=["nvidia"], collect_garbage=True)
    listed = {p.id: p for d in inv.devices() for p in d.partitions()}
    assert all(p.complete for p in listed.values()), "gc left something half-made"
    for dev in inv.devices():
        parts = [p for p in dev.partitions() if p.placement is not None]
        for a in parts:
            assert a.placement is not None
            assert a.placement.start >= 0 and a.placement.start + a.placement.size <= 8
            for b in parts:
                assert b.placement is not None
                assert a is b or not a.placement.overlaps(b.placement), (a, b)
    for i, worker in enumerate(docs):
        created = {d["id"] for d in worker if d["op"] == "created"}
        destroyed = {d["id"] for d in worker if d["op"] == "destroyed"}
        assert not destroyed & set(listed), "a destroyed partition is still listed"
        if i not in victims:  # what a surviving worker made and kept is all there
            assert created - destroyed <= set(listed)
