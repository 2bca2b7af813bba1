"""Roofline lower bounds per deployment target: a route's time is at least max(FLOPs / tensor peak, bytes / DRAM
bandwidth) on the target's reference board. A bound from published peaks, never a measurement: real kernels reach a
fraction of either peak, and elementwise work runs on CUDA cores, not tensor cores.

Each target (backend/trt/targets.py) names one reference board, its dense FP16 tensor throughput and DRAM bandwidth
as NVIDIA publishes them, and the document. Where the sheet gives another format or a 2:4-sparse figure (GB10 and
Jetson Thor: FP4 sparse; Jetson Orin: INT8 sparse; H100: FP16 sparse), the dense FP16 figure is derived: halved for
sparsity, halved for each halving of the operand width (the tensor-core rate ratio of every listed generation).
"""

from dataclasses import dataclass

from ..backend.trt.targets import TARGETS
from ..util.errors import NtcError

FP16_BITS = 16


@dataclass(frozen=True)
class Roof:
    """A target's reference board and its published peaks."""

    board: str
    tflops: float  # the sheet's tensor figure, in `bits`-wide operands, sparse or dense
    bits: int  # operand width of that figure: 16 (FP16), 8 (INT8), 4 (FP4)
    sparse: bool  # the figure assumes 2:4 structured sparsity
    accumulate: str  # "fp32": the FP32-accumulate figure (GeForce sheets list FP16 accumulate at twice it);
    # "unstated": the sheet gives one FP16 rate
    dram_gbs: float  # DRAM bandwidth, GB/s
    source: str  # NVIDIA document title and URL

    @property
    def fp16_tflops(self) -> float:
        """Dense FP16 tensor TFLOPS (derived from the published figure when that is sparse or narrower)."""
        return self.tflops / (2 if self.sparse else 1) / (FP16_BITS / self.bits)


ROOFS: dict[str, Roof] = {
    "rtx-turing": Roof(
        "GeForce RTX 2080 Ti Founders Edition", 56.9, 16, False, "fp32", 616,
        "NVIDIA Turing GPU Architecture whitepaper (WP-09183-001): "
        "https://images.nvidia.com/aem-dam/en-zz/Solutions/design-visualization/technologies/turing-architecture/"
        "NVIDIA-Turing-Architecture-Whitepaper.pdf"),
    "rtx-ampere": Roof(
        "GeForce RTX 3090", 71.0, 16, False, "fp32", 936,
        "NVIDIA Ampere GA102 GPU Architecture whitepaper: "
        "https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf"),
    "rtx-ada": Roof(
        "GeForce RTX 4090", 165.2, 16, False, "fp32", 1008,
        "NVIDIA Ada GPU Architecture whitepaper: "
        "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"),
    "rtx-blackwell": Roof(
        "GeForce RTX 5090", 209.5, 16, False, "fp32", 1792,
        "NVIDIA RTX Blackwell GPU Architecture whitepaper: "
        "https://images.nvidia.com/aem-dam/Solutions/geforce/blackwell/nvidia-rtx-blackwell-gpu-architecture.pdf"),
    "gb10": Roof(
        "DGX Spark (GB10 Grace Blackwell)", 1000.0, 4, True, "unstated", 273,
        "NVIDIA DGX Spark datasheet (1 PFLOP FP4 with sparsity, 273 GB/s LPDDR5x): "
        "https://www.nvidia.com/en-us/products/workstations/dgx-spark/"),
    "jetson-orin": Roof(
        "Jetson AGX Orin 64GB", 170.0, 8, True, "unstated", 204.8,
        "NVIDIA Jetson AGX Orin Series Technical Brief v1.2 (GPU 170 sparse INT8 TOPS, 204.8 GB/s LPDDR5): "
        "https://www.nvidia.com/content/dam/en-zz/Solutions/gtcf21/jetson-orin/"
        "nvidia-jetson-agx-orin-technical-brief.pdf"),
    "jetson-thor": Roof(
        "Jetson AGX Thor (T5000)", 2070.0, 4, True, "unstated", 273,
        "NVIDIA Jetson AGX Thor datasheet (2070 FP4 TFLOPS with sparsity, 273 GB/s LPDDR5X): "
        "https://www.nvidia.com/en-us/autonomous-machines/embedded-systems/jetson-thor/"),
    "datacenter-hopper": Roof(
        "H100 SXM5", 1979.0, 16, True, "unstated", 3350,
        "NVIDIA H100 Tensor Core GPU datasheet (FP16 tensor 1,979 TFLOPS with sparsity, 3.35 TB/s HBM3): "
        "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"),
}


def roof(target: str) -> Roof:
    """The reference board of a target name (backend/trt/targets.py)."""
    if target not in ROOFS:
        known = ", ".join(ROOFS)
        raise NtcError(f"no roofline for target {target!r}; choose from {known}" if target in TARGETS else
                       f"unknown target {target!r}; choose from {known}")
    return ROOFS[target]


def bound_ms(target: str, flops: float, bytes_moved: float) -> dict:
    """Roofline lower bound of running `flops` and moving `bytes_moved` on the target's reference board:
    {"bound_ms": max(flops / dense FP16 tensor peak, bytes / DRAM bandwidth) in ms, "limit": "compute" or "memory"
    (the larger term; "compute" on a tie), "board": the board's name}."""
    if flops < 0 or bytes_moved < 0:
        raise NtcError(f"a roofline needs non-negative counts, got {flops} FLOPs and {bytes_moved} bytes")
    r = roof(target)
    compute_ms = flops / (r.fp16_tflops * 1e12) * 1e3
    memory_ms = bytes_moved / (r.dram_gbs * 1e9) * 1e3
    return {"bound_ms": max(compute_ms, memory_ms), "limit": "compute" if compute_ms >= memory_ms else "memory",
            "board": r.board}
