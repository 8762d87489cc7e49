"""The exporter, scraped over HTTP and parsed as Prometheus parses it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from accelpool_exporter import AccelpoolCollector, serve
from prometheus_client.parser import text_string_to_metric_families

import accelpool
from accelpool.spi import Backend
from accelpool.testing import inventory_of, toy_backend, write_fleet
from accelpool.types import DeviceInfo

Samples = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELPOOL_STATE_DIR", str(tmp_path / "state"))


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        out.setdefault(fam.name, [])
        for s in fam.samples:
            out[fam.name].append((dict(s.labels), float(s.value)))
    return out


@pytest.fixture()
def scrape_inventory() -> Iterator[object]:
    servers = []

    def run(inv: accelpool.Inventory, interval: float = 0.0) -> Samples:
        server = serve(AccelpoolCollector(inv, interval=interval), port=0)
        servers.append(server)
        return scrape(server.url)

    yield run
    for s in servers:
        s.shutdown()


def test_dgx_a100_with_mig_has_dcgm_and_neutral_families(scrape_inventory, tmp_path: Path) -> None:
    fleet = write_fleet(
        tmp_path, "two", "nvidia", [("A100-SXM4-40GB", 1, {"mig": True}), ("A100-SXM4-40GB", 1, {})]
    )
    inv = accelpool.discover(sim=fleet)
    mig_gpu = inv.device("nvidia:0")
    part = mig_gpu.create_partition("1g.5gb")
    with accelpool.open_session(inv.device("nvidia:1"), isolate=False):
        m = scrape_inventory(inv)

    neutral = [
        "accelpool_device_memory_used_bytes",
        "accelpool_device_memory_total_bytes",
        "accelpool_device_utilization_ratio",
        "accelpool_device_temperature_celsius",
        "accelpool_device_power_watts",
        "accelpool_partitions",
        "accelpool_profile_available",
        "accelpool_claim_info",
        "accelpool_backend_up",
    ]
    for name in neutral:
        assert m[name], f"{name} has no samples"
    dcgm = [
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
    ]
    for name in dcgm:
        assert m[name], f"{name} has no samples"
        for labels, _ in m[name]:
            assert {"gpu", "UUID", "modelName", "Hostname"} <= labels.keys()

    # NVML reports no utilisation on a MIG-enabled GPU, and neither does dcgm-exporter.
    assert {lab["gpu"] for lab, _ in m["DCGM_FI_DEV_GPU_UTIL"]} == {"1"}
    mig = [(lab, v) for lab, v in m["DCGM_FI_DEV_FB_FREE"] if lab["GPU_I_PROFILE"]]
    assert len(mig) == 1
    labels, free_mib = mig[0]
    assert labels["GPU_I_PROFILE"] == "1g.5gb"
    assert labels["GPU_I_ID"] == str(part.attributes["nvidia.com/gpuInstanceId"])
    assert labels["UUID"] == mig_gpu.attributes["nvidia.com/uuid"]
    assert 0 < free_mib <= part.memory_bytes / 2**20

    total = {lab["index"]: v for lab, v in m["accelpool_device_memory_total_bytes"]}
    assert total == {"0": mig_gpu.memory_bytes, "1": inv.device("nvidia:1").memory_bytes}
    parts = m["accelpool_partitions"]
    assert [(lab["index"], lab["profile"], v) for lab, v in parts] == [("0", "1g.5gb", 1.0)]
    avail = {
        lab["profile"]: v for lab, v in m["accelpool_profile_available"] if lab["index"] == "0"
    }
    assert avail["1g.5gb"] == mig_gpu.profile("1g.5gb").available == 6
    (claim,) = m["accelpool_claim_info"]
    assert claim[0]["target"] == "nvidia:1" or claim[0]["target"] == inv.device("nvidia:1").id
    assert str(os.getpid()) in claim[0]["holder"]
    ratios = [v for _, v in m["accelpool_device_utilization_ratio"]]
    assert all(0.0 <= r <= 1.0 for r in ratios)
    assert dict((lab["backend"], v) for lab, v in m["accelpool_backend_up"])["nvidia"] == 1.0


def test_ascend_fleet_has_npu_exporter_families(scrape_inventory) -> None:
    inv = accelpool.discover(sim="atlas-800-910b")
    dev = inv.devices("ascend")[0]
    vnpu = dev.create_partition(dev.profiles()[0].name)
    m = scrape_inventory(inv)
    for name in [
        "npu_chip_info_utilization",
        "npu_chip_info_hbm_used_memory",
        "npu_chip_info_hbm_total_memory",
        "npu_chip_info_temperature",
        "npu_chip_info_power",
        "npu_chip_info_health_status",
    ]:
        assert m[name], f"{name} has no samples"
        for labels, _ in m[name]:
            assert {"id", "model_name", "vdie_id", "v_dev_id", "is_virtual"} <= labels.keys()
    chips = [lab for lab, _ in m["npu_chip_info_health_status"]]
    assert len(chips) == len(inv.devices("ascend"))
    virtual = [
        (lab, v) for lab, v in m["npu_chip_info_hbm_total_memory"] if lab["is_virtual"] == "true"
    ]
    assert [(lab["v_dev_id"], v) for lab, v in virtual] == [
        (str(vnpu.attributes["huawei.com/vnpuID"]), vnpu.memory_bytes // 2**20)
    ]
    up = dict((lab["backend"], v) for lab, v in m["accelpool_backend_up"])
    assert up == {"ascend": 1.0}  # backends the simulated fleet leaves out: not reported


def test_a_simulated_backend_that_fails_to_load_is_down(scrape_inventory, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path, "bad", "ascend", [("Ascend999Z", 1, {})])  # no such chip
    inv = accelpool.discover(sim=fleet)
    status = {s.name: s for s in inv.backends()}
    assert not status["ascend"].available
    m = scrape_inventory(inv)
    up = dict((lab["backend"], v) for lab, v in m["accelpool_backend_up"])
    assert up == {"ascend": 0.0}
    assert m["accelpool_device_memory_total_bytes"] == []


class _Failing(Backend):
    """A backend that probes and lists, then fails every reading."""

    def __init__(self) -> None:
        self._inner = toy_backend(devices=1, name="flaky")
        super().__init__(self._inner.context)

    @property
    def name(self) -> str:
        return "flaky"

    def probe(self) -> str | None:
        return self._inner.probe()

    def devices(self) -> Sequence[DeviceInfo]:
        return self._inner.devices()

    def capabilities(self):  # type: ignore[no-untyped-def]
        return self._inner.capabilities()

    def telemetry(self, device: DeviceInfo):  # type: ignore[no-untyped-def]
        raise RuntimeError("driver went away")

    def partitions(self, device: DeviceInfo):  # type: ignore[no-untyped-def]
        raise RuntimeError("driver went away")

    def profiles(self, device: DeviceInfo):  # type: ignore[no-untyped-def]
        raise RuntimeError("driver went away")


def test_failing_backend_and_lost_device_do_not_break_the_scrape(scrape_inventory) -> None:
    good = toy_backend(devices=2)
    inv = inventory_of(good, _Failing())
    lost = inv.device("toy:1")
    good.inject_fault("device-lost", lost.info)
    m = scrape_inventory(inv)
    up = dict((lab["backend"], v) for lab, v in m["accelpool_backend_up"])
    assert up == {"toy": 1.0, "flaky": 0.0}
    healthy = {lab["device"]: v for lab, v in m["accelpool_device_healthy"]}
    assert healthy[inv.device("toy:0").id] == 1.0
    assert healthy[lost.id] == 0.0
    used = {lab["device"] for lab, _ in m["accelpool_device_memory_used_bytes"]}
    assert inv.device("toy:0").id in used and lost.id not in used


def test_interval_reuses_one_pass(tmp_path: Path) -> None:
    inv = accelpool.discover(sim="dgx-a100")
    collector = AccelpoolCollector(inv, interval=60)
    first = collector.snapshot()
    inv.device("nvidia:0").create_partition("1g.5gb")
    assert collector.snapshot() is first
    fresh = AccelpoolCollector(inv, interval=0).snapshot()
    assert len(fresh.devices[0].partitions) == 1


def test_cli_serves_until_terminated(tmp_path: Path) -> None:
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "accelpool", "--sim", "dgx-a100", "exporter", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("accelpool exporter serving http://127.0.0.1:"), line
        m = scrape(line.split()[-1])
        assert len(m["DCGM_FI_DEV_GPU_TEMP"]) == 8
    finally:
        proc.terminate()
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--port", "70000"], "invalid port"), (["--interval", "nan"], "invalid interval")],
)
def test_cli_rejects_bad_options(args: list[str], words: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "accelpool", "--sim", "dgx-a100", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_docs_python_examples_run() -> None:
    import re

    doc = Path(__file__).resolve().parents[3] / "docs" / "exporter.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert blocks
    scope: dict[str, object] = {}  # in order, sharing names, as the docs harness runs them
    for block in blocks:
        exec(compile(block, str(doc), "exec"), scope)
