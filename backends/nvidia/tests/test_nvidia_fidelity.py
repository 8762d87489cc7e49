"""The simulator against real drivers: each test pins one fact a public transcript shows.

Every test names its source. Where NVIDIA's own mocks (go-nvml's dgxh100/dgxh200)
disagree with a real transcript, the transcript wins.
"""

from __future__ import annotations

from collections.abc import Callable

from accelpool_nvidia.models import MIB

import accelpool

Inv = Callable[[str], accelpool.Inventory]


def test_h200_mig_memory_sizes(inventory: Inv) -> None:
    # Source: `nvidia-smi mig -lgip` on an H200 in NVIDIA/mig-parted#120: 1g.35gb and
    # 2g.35gb are 32.25 GiB, 3g.71gb and 4g.71gb 69.50 GiB.
    profiles = {p.name: p for p in inventory("hgx-h200").device("nvidia:0").profiles()}
    for name in ("1g.35gb", "2g.35gb"):
        assert profiles[name].memory_bytes == 33024 * MIB
    for name in ("3g.71gb", "4g.71gb"):
        assert profiles[name].memory_bytes == 71168 * MIB
