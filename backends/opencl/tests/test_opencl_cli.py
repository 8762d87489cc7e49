"""The ``accelpool`` command line over the OpenCL backend on the PoCL device."""

from __future__ import annotations

import os
from typing import Any

import pytest

from accelpool.testing import CliResult, run_cli


def accelpool_cli(*args: str, backends: str = "opencl") -> CliResult:
    return run_cli(*args, env=dict(os.environ, ACCELPOOL_BACKENDS=backends))


def one_error_line(result: CliResult) -> str:
    assert result.code != 0, result.out
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]


@pytest.fixture(scope="module")
def ls() -> dict[str, Any]:
    result = accelpool_cli("ls", "--json")
    assert result.code == 0, result.err
    doc: dict[str, Any] = result.json()
    return doc


def test_ls_json_lists_the_pocl_device_with_memory_and_compute_units(ls: dict[str, Any]) -> None:
    [status] = [b for b in ls["backends"] if b["name"] == "opencl"]
    assert status["available"] is True and status["reason"] is None
    pocl = [d for d in ls["devices"] if d["id"].startswith("opencl:pocl-")]
    assert pocl
    dev = pocl[0]
    assert dev["backend"] == "opencl" and dev["index"] == 0
    assert dev["memory_bytes"] > 0 and dev["compute_units"] >= 1
    assert dev["attributes"]["opencl.khronos.org/deviceType"] == "CPU"
    assert dev["partitions"] == []


def test_profiles_json_lists_the_fission_profiles(ls: dict[str, Any]) -> None:
    result = accelpool_cli("profiles", "opencl:0", "--json")
    assert result.code == 0, result.err
    profiles = result.json()
    cus = ls["devices"][0]["compute_units"]
    max_sub = ls["devices"][0]["attributes"]["opencl.khronos.org/maxSubDevices"]
    by_name = {p["name"]: p for p in profiles}
    assert {f"equally-{n}" for n in range(1, cus + 1)} <= set(by_name)
    one = by_name["equally-1"]
    assert one["kind"] == "subdevice" and one["compute_units"] == 1
    assert one["max_count"] == one["available"] == cus
    assert [p["start"] for p in one["placements"]] == list(range(cus))
    counts = [n for n in by_name if n.startswith("counts-")]
    # balanced whole-device splits into 2, 3, … sub-devices
    assert len(counts) == max(0, min(cus, max_sub, 8) - 1)
    if cus == 2:
        assert counts == ["counts-1+1"]


def test_unknown_device_is_one_line_and_non_zero() -> None:
    line = one_error_line(accelpool_cli("profiles", "opencl:99"))
    assert "NotFound" in line and "opencl:99" in line


def test_cli_partition_create_explains_process_scope() -> None:
    line = one_error_line(accelpool_cli("partition", "create", "opencl:0", "equally-1"))
    assert "scope 'process'" in line and "vanish" in line


def test_unknown_profile_or_partition_is_one_line_and_non_zero() -> None:
    one_error_line(accelpool_cli("partition", "create", "opencl:0", "no-such-profile"))
    line = one_error_line(accelpool_cli("partition", "destroy", "opencl:pocl-0.sub1"))
    assert "NotFound" in line
