"""The CLI contract: JSON shapes, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from accelpool.testing import CliResult, PluginSite

DEVICE_KEYS = {
    "id",
    "backend",
    "index",
    "vendor",
    "model",
    "memory_bytes",
    "compute_units",
    "attributes",
    "partitions",
}
PROFILE_KEYS = {"name", "kind", "memory_bytes", "compute_units", "max_count", "placements"}


@pytest.fixture
def toy_cli(
    plugin_site: PluginSite, cli: Callable[..., CliResult], toy_plugin: str
) -> Callable[..., CliResult]:
    plugin_site.backend("toy", toy_plugin)

    def run(*args: str) -> CliResult:
        return cli(*args, env={"ACCELPOOL_BACKENDS": "toy"})

    return run


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "accelpool", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "accelpool 0.1.0"


def test_ls_json_has_the_documented_shape(toy_cli: Callable[..., CliResult]) -> None:
    doc = toy_cli("ls", "--json").json()
    assert doc["backends"] == [{"name": "toy", "available": True, "reason": None, "version": "0.1"}]
    assert [d["id"] for d in doc["devices"]] == ["toy:toy-0", "toy:toy-1"]
    for d in doc["devices"]:
        assert set(d) >= DEVICE_KEYS
        assert d["memory_bytes"] == 8 << 30 and d["compute_units"] == 8


def test_profiles_json_has_the_documented_shape(toy_cli: Callable[..., CliResult]) -> None:
    profiles = toy_cli("profiles", "toy:0", "--json").json()
    assert [p["name"] for p in profiles] == ["1s", "2s", "4s", "8s"]
    assert all(set(p) >= PROFILE_KEYS for p in profiles)
    assert profiles[2]["placements"] == [{"start": 0, "size": 4}, {"start": 4, "size": 4}]


def test_human_tables(toy_cli: Callable[..., CliResult]) -> None:
    ls = toy_cli("ls")
    assert ls.code == 0 and "Toy-8S" in ls.out
    assert "| toy:1 " in ls.out  # the BACKEND:INDEX short name users type
    wide = toy_cli("ls", "--wide")
    assert wide.code == 0 and "toy:toy-1" in wide.out  # --wide adds the full ids
    prof = toy_cli("profiles", "toy:1")
    assert prof.code == 0 and "PLACEMENTS" in prof.out and "0,4" in prof.out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("profiles", "toy:7"), 1, "NotFound: no device 'toy:7'"),
        (("profiles", "garbage"), 1, "must look like BACKEND:ID"),
        (("profiles",), 2, "the following arguments are required: DEVICE"),
        (("frobnicate",), 2, "invalid choice: 'frobnicate'"),
        (
            ("partition", "create", "toy:0", "1s", "--placement", "x"),
            2,
            "placement must be an integer",
        ),
        (("partition", "destroy", "toy:toy-0-p3"), 1, "no partition 'toy:toy-0-p3'"),
        (("sim", "reset"), 2, "no simulated fleet given"),
        (("--sim", "nowhere", "ls"), 1, "no simulated fleet 'nowhere'"),
    ],
)
def test_errors_are_one_line_with_the_right_exit_code(
    toy_cli: Callable[..., CliResult], args: tuple[str, ...], code: int, message: str
) -> None:
    result = toy_cli(*args)
    assert result.code == code
    assert result.err.count("\n") == 1, result.err
    assert message in result.err
    assert "Traceback" not in result.err


def test_partition_create_and_destroy_through_the_cli_of_a_fleet(
    plugin_site: PluginSite, cli: Callable[..., CliResult], toy_plugin: str, tmp_path: object
) -> None:
    plugin_site.backend("toy", toy_plugin)
    fleet = plugin_site.root / "fleet.toml"
    fleet.write_text("name = 'toys'\n[[devices]]\nbackend = 'toy'\nmodel = 'Toy-8S'\ncount = 1\n")
    env = {"ACCELPOOL_SIM": str(fleet)}
    made = cli("partition", "create", "toy:0", "4s", "--placement", "4", "--json", env=env)
    assert made.code == 0, made.err
    part = made.json()
    assert part["placement"] == {"start": 4, "size": 4} and part["scope"] == "device"
    # a second process sees it, as it would see a MIG instance
    listed = cli("ls", "--json", env=env).json()
    assert [p["id"] for p in listed["devices"][0]["partitions"]] == [part["id"]]
    full = cli("partition", "create", "toy:0", "8s", env=env)
    assert full.code == 1 and "InsufficientCapacity" in full.err
    assert cli("partition", "destroy", part["id"], env=env).code == 0
    assert cli("ls", "--json", env=env).json()["devices"][0]["partitions"] == []
    made = cli("partition", "create", "toy:0", "8s", env=env)
    assert made.code == 0
    assert cli("sim", "reset", env=env).code == 0
    assert cli("ls", "--json", env=env).json()["devices"][0]["partitions"] == []


def test_import_accelpool_loads_no_heavy_runtime() -> None:
    code = (
        "import sys, accelpool; heavy = {'onnxruntime', 'pyopencl', 'onnx', 'pynvml',"
        " 'hypothesis'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
