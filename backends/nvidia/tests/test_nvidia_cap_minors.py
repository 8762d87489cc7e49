"""nvidia-caps minors of MIG devices: the computed layout against NVIDIA's published
table, and simulated fleets reading a rendered table like real hosts do."""

from __future__ import annotations

from pathlib import Path

from accelpool_nvidia.container import cap_minors, render_mig_minors

import accelpool
from accelpool.container import container_edits

# Published rows: NVIDIA's MIG user guide ("Device Nodes and Capabilities": the first
# rows and the last two of the table) and a real host's table quoted in a Slurm
# gres.conf (gpu4/gi7 at 606 and 607).
PUBLISHED = {
    ("gpu0/gi0/access", "gpu0/gi0/ci0/access"): (3, 4),
    ("gpu0/gi0/access", "gpu0/gi0/ci2/access"): (3, 6),
    ("gpu31/gi14/access", "gpu31/gi14/ci6/access"): (4314, 4321),
    ("gpu31/gi14/access", "gpu31/gi14/ci7/access"): (4314, 4322),
    ("gpu4/gi7/access", "gpu4/gi7/ci0/access"): (606, 607),
}


def _key(gi_key: str, ci_key: str) -> tuple[int, int, int]:
    gpu, gi, ci, _ = ci_key.split("/")
    return int(gpu[3:]), int(gi[2:]), int(ci[2:])


def test_computed_minors_match_the_published_table(tmp_path: Path) -> None:
    absent = tmp_path / "no-such-mig-minors"
    for (gi_key, ci_key), want in PUBLISHED.items():
        assert cap_minors(*_key(gi_key, ci_key), table=absent) == want
        assert cap_minors(*_key(gi_key, ci_key), table=None) == want


def test_rendered_table_has_the_published_shape_and_rows() -> None:
    rows = [line.rsplit(" ", 1) for line in render_mig_minors().splitlines()]
    first = [["config", "1"], ["monitor", "2"], ["gpu0/gi0/access", "3"]]
    assert rows[:4] == [*first, ["gpu0/gi0/ci0/access", "4"]]
    assert rows[-2:] == [["gpu31/gi14/ci6/access", "4321"], ["gpu31/gi14/ci7/access", "4322"]]
    minors = [int(m) for _, m in rows]
    assert minors == list(range(1, 4323))  # every minor once, in order
    table = dict(rows)
    for (gi_key, ci_key), (gi, ci) in PUBLISHED.items():
        assert (int(table[gi_key]), int(table[ci_key])) == (gi, ci)


def test_a_table_present_wins_over_the_layout(tmp_path: Path) -> None:
    # the driver's table is the truth where it exists (rows as a real host lists them)
    table = tmp_path / "mig-minors"
    table.write_text("config 1\nmonitor 2\ngpu0/gi11/access 102\ngpu0/gi11/ci0/access 103\n")
    assert cap_minors(0, 11, 0, table) == (102, 103)
    assert cap_minors(0, 11, 0, None) == (102, 103)  # same as the layout here
    table.write_text("gpu0/gi11/access 500\ngpu0/gi11/ci0/access 501\n")
    assert cap_minors(0, 11, 0, table) == (500, 501)


def test_simulated_fleet_reads_its_rendered_table() -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        part = inv.device("nvidia:2").create_partition("1g.5gb", placement=3)
        gi = int(part.attributes["nvidia.com/gpuInstanceId"])
        ci = int(part.attributes["nvidia.com/computeInstanceId"])
        nodes = [n.path for n in container_edits(part).device_nodes]
        root = Path(inv.device("nvidia:2").backend_instance.context.sim.root)
        table = root / "proc/driver/nvidia-caps/mig-minors"
        assert table.read_text() == render_mig_minors()
        g, c = cap_minors(2, gi, ci, None)
        assert nodes == [
            "/dev/nvidia2",
            f"/dev/nvidia-caps/nvidia-cap{g}",
            f"/dev/nvidia-caps/nvidia-cap{c}",
        ]
        # read, not computed: a changed table changes the spec
        table.write_text(f"gpu2/gi{gi}/access 9001\ngpu2/gi{gi}/ci{ci}/access 9002\n")
        nodes = [n.path for n in container_edits(part).device_nodes]
        assert nodes[1:] == ["/dev/nvidia-caps/nvidia-cap9001", "/dev/nvidia-caps/nvidia-cap9002"]
