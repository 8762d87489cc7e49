"""The sub-device profile model for any compute-unit count, and the backend's create path
over a stand-in for drivers unlike PoCL (no OpenCL device needed)."""

from __future__ import annotations

import pytest
from accelpool_opencl import profiles as prof
from accelpool_opencl.backend import OpenCLBackend, _Device
from accelpool_opencl.errors import cl_error
from hypothesis import given
from hypothesis import strategies as st

from accelpool.errors import (
    AccelPoolError,
    BackendUnavailable,
    InsufficientCapacity,
    InvalidRequest,
    NotFound,
    UnsupportedOperation,
)
from accelpool.spi import BackendContext
from accelpool.types import DeviceInfo, Placement

BOTH = (prof.PARTITION_EQUALLY, prof.PARTITION_BY_COUNTS)


def fission(cus: int, props: tuple[int, ...] = BOTH, max_sub: int | None = None) -> prof.Fission:
    return prof.Fission.of(cus, props, cus if max_sub is None else max_sub)


def test_two_compute_units_list_exactly_these_profiles() -> None:
    names = [p.name for p in prof.listed(fission(2))]
    assert names == ["equally-1", "equally-2", "counts-1+1"]


def test_balanced_counts_profiles_cover_the_whole_device() -> None:
    listed = [p for p in prof.listed(fission(10)) if p.family == "counts"]
    assert [p.name for p in listed][:3] == ["counts-5+5", "counts-4+3+3", "counts-3+3+2+2"]
    assert all(p.compute_units == 10 for p in listed)
    assert len(listed) == prof.MAX_LISTED_COUNTS - 1


def test_only_properties_the_device_lists_are_offered() -> None:
    assert prof.listed(fission(4, ())) == []
    assert prof.listed(fission(4, (prof.PARTITION_BY_AFFINITY_DOMAIN,))) == []
    equally_only = prof.listed(fission(4, (prof.PARTITION_EQUALLY,)))
    assert {p.family for p in equally_only} == {"equally"}
    with pytest.raises(InvalidRequest, match="BY_COUNTS"):
        prof.parse("counts-1+1", fission(4, (prof.PARTITION_EQUALLY,)), "opencl:x")


def test_equally_uses_by_counts_when_offered_else_equally() -> None:
    spec = prof.equally(3)
    assert spec.cl_properties(fission(8)) == [prof.PARTITION_BY_COUNTS, 3, 0]
    assert spec.cl_properties(fission(8, (prof.PARTITION_EQUALLY,))) == [
        prof.PARTITION_EQUALLY,
        3,
    ]
    assert prof.counts([2, 1]).cl_properties(fission(8)) == [prof.PARTITION_BY_COUNTS, 2, 1, 0]


@pytest.mark.parametrize(
    "name",
    [
        "equally-x",
        "equally-",
        "equally-0",
        "equally-5",
        "counts-",
        "counts-0+1",
        "counts-1++1",
        "counts-3+2",
        "counts-1+1+1+1+1",
        "equally-01",
        "counts-1+01",
        "EQUALLY-1",
        "1g.5gb",
        "",
    ],
)
def test_malformed_or_out_of_range_profiles_are_invalid_and_name_the_choices(name: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        prof.parse(name, fission(4), "opencl:pocl-0")
    text = str(err.value)
    assert "\n" not in text
    assert "equally-N with 1 <= N <= 4" in text
    assert "counts-A+B" in text


def test_counts_are_limited_by_max_sub_devices() -> None:
    f = fission(8, max_sub=2)
    assert prof.parse("counts-4+4", f, "d").sizes == (4, 4)
    with pytest.raises(InvalidRequest, match="3 sub-devices"):
        prof.parse("counts-2+2+2", f, "d")


def test_aligned_placements() -> None:
    assert list(prof.aligned_starts(1, 3)) == [0, 1, 2]
    assert list(prof.aligned_starts(2, 5)) == [0, 2]
    assert list(prof.aligned_starts(3, 8)) == [0, 3]
    assert prof.free_starts(2, 6, used={1}) == [2, 4]


@given(cus=st.integers(1, 64), max_sub=st.integers(0, 80), props=st.sets(st.sampled_from(BOTH)))
def test_every_listed_profile_parses_back_and_fits(cus: int, max_sub: int, props: set[int]) -> None:
    f = prof.Fission.of(cus, props, max_sub)
    for spec in prof.listed(f):
        assert prof.parse(spec.name, f, "d") == spec
        assert 1 <= spec.compute_units <= cus
        assert len(spec.sizes) <= f.max_counts
        starts = prof.aligned_starts(spec.compute_units, cus)
        assert len(starts) == cus // spec.compute_units
        assert all(s + spec.compute_units <= cus for s in starts)


@given(cus=st.integers(1, 32), sizes=st.lists(st.integers(1, 32), max_size=40))
def test_first_fit_of_free_aligned_ranges_never_overlaps(cus: int, sizes: list[int]) -> None:
    used: set[int] = set()
    for size in sizes:
        free = prof.free_starts(size, cus, used)
        if not free:
            continue
        taken = set(range(free[-1], free[-1] + size))
        assert used.isdisjoint(taken) and max(taken) < cus
        used |= taken
    assert len(used) <= cus


class _FakeClError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (-18, InsufficientCapacity),
        (-68, InvalidRequest),
        (-30, InvalidRequest),
        (-33, NotFound),
        (-1001, BackendUnavailable),
        (-9999, AccelPoolError),
    ],
)
def test_cl_codes_map_onto_accelpool_errors_keeping_code_and_text(
    code: int, cls: type[AccelPoolError]
) -> None:
    err = cl_error(_FakeClError(code, "clSomething failed: WHATEVER"), "doing it")
    assert type(err) is cls
    assert err.vendor_code == code
    assert err.vendor_message == "clSomething failed: WHATEVER"
    assert str(err).startswith("doing it failed")
    assert "\n" not in str(err)


# -- the backend's create path on drivers unlike PoCL (a stand-in pyopencl device) ---------


class _StandInDevice:
    """Answers clCreateSubDevices as the OpenCL spec says a CU-counting driver would."""

    def __init__(self, cus: int, fail_code: int | None = None) -> None:
        self.max_compute_units = cus
        self.fail_code = fail_code
        self.calls: list[list[int]] = []

    def create_sub_devices(self, props: list[int]) -> list[_StandInDevice]:
        import pyopencl as cl

        self.calls.append(list(props))
        if self.fail_code is not None:
            record = cl._cl._ErrorRecord("clCreateSubDevices", self.fail_code, "stand-in")
            raise cl.RuntimeError(record)
        if props[0] == prof.PARTITION_EQUALLY:
            return [_StandInDevice(props[1]) for _ in range(self.max_compute_units // props[1])]
        return [_StandInDevice(n) for n in props[1:-1]]


def _backend_over(
    stand_in: _StandInDevice, props: tuple[int, ...]
) -> tuple[OpenCLBackend, DeviceInfo]:
    from accelpool_opencl.backend import OpenCLBackend

    from accelpool.types import DeviceInfo

    backend = OpenCLBackend(BackendContext(name="opencl"))
    info = DeviceInfo("acme-0", 0, "Acme", "Acme CPU", 1 << 30, stand_in.max_compute_units)
    fission = prof.Fission.of(stand_in.max_compute_units, props, stand_in.max_compute_units)
    backend._devices["acme-0"] = _Device(info, stand_in, fission, True, None)
    backend._probed = True
    return backend, info


def test_an_equally_only_device_keeps_the_first_piece() -> None:
    stand_in = _StandInDevice(6)
    backend, info = _backend_over(stand_in, (prof.PARTITION_EQUALLY,))
    assert [p.name for p in backend.profiles(info)][-1] == "equally-6"
    part = backend.create_partition(info, "equally-2")
    assert stand_in.calls == [[prof.PARTITION_EQUALLY, 2]]
    assert part.compute_units == 2 and part.placement == Placement(4, 2)
    assert len(backend._parts[part.native_id].cl) == 1
    assert part.attributes["opencl.khronos.org/partitionType"] == "EQUALLY"
    with pytest.raises(InvalidRequest, match="lacks BY_COUNTS"):
        backend.create_partition(info, "counts-1+1")


def test_a_failed_fission_leaves_nothing_behind_and_keeps_the_cl_code() -> None:
    backend, info = _backend_over(_StandInDevice(4, fail_code=-18), (prof.PARTITION_BY_COUNTS,))
    with pytest.raises(InsufficientCapacity) as err:
        backend.create_partition(info, "counts-2+2")
    assert err.value.vendor_code == -18
    assert "CL_DEVICE_PARTITION_FAILED" in str(err.value)
    assert backend.partitions(info) == []
    assert all(p.available == p.max_count for p in backend.profiles(info))


def test_a_device_without_fission_offers_nothing_and_refuses_to_partition() -> None:
    backend, info = _backend_over(_StandInDevice(16), ())
    assert backend.profiles(info) == []
    with pytest.raises(UnsupportedOperation, match="cannot be split"):
        backend.create_partition(info, "equally-1")
