"""SM counts of NVIDIA data-centre boards, for when NVML will not say.

``nvmlDeviceGetNumGpuCores`` returns NOT_SUPPORTED on MIG-enabled GPUs (nvml.h), and
NVML has no other call for a whole GPU's SM count, so the backend falls back to the
board's published figure, keyed by PCI device id (the upper 16 bits of NVML's
``pciDeviceId``). Figures: NVIDIA's A100, A30, H100 and H200 data sheets.
"""

from __future__ import annotations

#: PCI device id -> streaming multiprocessors
SMS_BY_DEVICE_ID: dict[int, int] = {
    0x20B0: 108,  # A100-SXM4-40GB
    0x20B1: 108,  # A100 PCIe 40GB
    0x20F1: 108,  # A100-PCIE-40GB
    0x20B2: 108,  # A100-SXM4-80GB
    0x20B5: 108,  # A100 80GB PCIe
    0x20F3: 108,  # A800-SXM4-80GB
    0x20F5: 108,  # A800 80GB PCIe
    0x20F6: 108,  # A800 40GB PCIe
    0x20B7: 56,  # A30
    0x2330: 132,  # H100 80GB HBM3 (SXM5)
    0x2331: 114,  # H100 PCIe
    0x2321: 132,  # H100 NVL
    0x2324: 132,  # H800
    0x2335: 132,  # H200 (SXM)
    0x233B: 132,  # H200 NVL
}


def board_sms(pci_device_id: int) -> int | None:
    """The SM count of the board with NVML ``pciDeviceId`` (0xDDDDVVVV), if known."""
    return SMS_BY_DEVICE_ID.get((pci_device_id >> 16) & 0xFFFF)
