"""The MIG profile table is read once per kind of GPU, not once per GPU."""

from __future__ import annotations

from collections.abc import Callable

import accelpool


def _table_reads(calls: dict[str, int]) -> int:
    return sum(
        n for name, n in calls.items() if name.startswith("nvmlDeviceGetGpuInstanceProfileInfo")
    )


def test_a_fleet_of_one_model_reads_the_profile_table_once(
    inventory: Callable[[str], accelpool.Inventory], fleet_file: Callable[..., str]
) -> None:
    inv = inventory(fleet_file("A100-SXM4-40GB", count=4, mig=True))
    sim = inv.backend("nvidia").simulator  # type: ignore[attr-defined]
    gpus = inv.devices()
    first = gpus[0].partitions()
    one = _table_reads(sim.calls)
    assert one > 0 and first == []
    for d in gpus[1:]:
        assert d.partitions() == []
    assert _table_reads(sim.calls) == one  # the other three GPUs reuse the table
    names = [[p.name for p in d.profiles()] for d in gpus]
    assert all(n == names[0] for n in names) and "3g.20gb" in names[0]
    part = gpus[3].create_partition("3g.20gb")
    assert [p.id for p in gpus[3].partitions()] == [part.id]


def test_different_models_read_their_own_tables(
    inventory: Callable[[str], accelpool.Inventory], tmp_path: object
) -> None:
    from accelpool.testing import write_fleet

    spec = write_fleet(
        tmp_path,  # type: ignore[arg-type]
        "two-models",
        "nvidia",
        [("A100-SXM4-40GB", 1, {"mig": True}), ("H100-SXM5-80GB", 1, {"mig": True})],
    )
    inv = inventory(spec)
    a100, h100 = inv.devices()
    assert "3g.20gb" in [p.name for p in a100.profiles()]
    assert "3g.40gb" in [p.name for p in h100.profiles()]
