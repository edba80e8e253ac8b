"""`features.precision: auto`: bfloat16 where the hardware computes it natively, float32 elsewhere.

bfloat16 runs the frozen backbone about 3x faster on CPUs with AMX or AVX512-BF16 units and on
CUDA GPUs with bf16, but on other CPUs (most laptops: Intel Core without AVX-512, Apple M1)
PyTorch emulates it, and a cold repro takes hours instead of minutes. So the default asks the
machine. What was chosen is recorded in build/features/info.json, and from there in MLflow and
the model card: every stage after `features` reads it there, never from params, so the heads run
in the precision their features were made in.

The CPU's units are read from /proc/cpuinfo. oneDNN, which runs PyTorch's bfloat16 CPU kernels,
honours `ONEDNN_MAX_CPU_ISA` (formerly `DNNL_MAX_CPU_ISA`): an ISA below AVX512_CORE_BF16 turns
the units off for it, and so for `auto` too. That is also how the tests mask them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

PRECISIONS = ("auto", "float32", "bfloat16")
BF16_UNITS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags, best first
# oneDNN's ISA levels (ONEDNN_MAX_CPU_ISA) that stop below each unit: bfloat16 kernels need AVX512_CORE_BF16 or more
BELOW_AVX512_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
BELOW_AMX = BELOW_AVX512_BF16 | {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512"}


def isa_cap() -> str:
    """The ISA oneDNN is capped at by the environment, upper-case; '' when it is not capped."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()


def cpu_bf16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's bfloat16 matrix units that oneDNN may use (amx_bf16, avx512_bf16), or why there are none."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return "bf16 units unknown"
    cap = isa_cap()
    below = {"amx_bf16": BELOW_AMX, "avx512_bf16": BELOW_AVX512_BF16}
    usable = [u for u in BF16_UNITS if u in flags and cap not in below[u]]
    if usable:
        return usable[0]
    masked = [u for u in BF16_UNITS if u in flags]
    return f"no bf16 units ({masked[0]} masked by ONEDNN_MAX_CPU_ISA={cap})" if masked else "no bf16 units"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products in hardware."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_bf16_units() in BF16_UNITS


def resolve(setting: str, device: torch.device) -> str:
    """The precision to compute in: ``setting`` itself, or for `auto` what ``device`` does natively."""
    if setting not in PRECISIONS:
        raise ValueError(f"features.precision must be one of {PRECISIONS}, not {setting!r}")
    if setting != "auto":
        return setting
    return "bfloat16" if native_bf16(device) else "float32"
