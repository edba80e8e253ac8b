"""`features.precision: auto` (model/precision.py): bfloat16 where the device has it natively, float32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from dermsynth.model import precision

CPU = torch.device("cpu")


def cpuinfo(tmp_path, *flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text("processor : 0\nflags : fpu sse4_1 avx2 avx512f " + " ".join(flags) + "\n")
    return path


@pytest.fixture(autouse=True)
def uncapped(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)


def test_units_are_read_from_cpuinfo_best_first(tmp_path):
    assert precision.cpu_bf16_units(cpuinfo(tmp_path, "avx512_bf16", "amx_bf16")) == "amx_bf16"
    assert precision.cpu_bf16_units(cpuinfo(tmp_path, "avx512_bf16")) == "avx512_bf16"
    assert precision.cpu_bf16_units(cpuinfo(tmp_path)) == "no bf16 units"
    assert precision.cpu_bf16_units(tmp_path / "absent") == "bf16 units unknown"


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        ("avx512_core", "no bf16 units (amx_bf16 masked by ONEDNN_MAX_CPU_ISA=AVX512_CORE)"),
        ("AVX2", "no bf16 units (amx_bf16 masked by ONEDNN_MAX_CPU_ISA=AVX2)"),
        ("AVX512_CORE_BF16", "avx512_bf16"),  # AMX off, AVX512-BF16 still allowed
        ("AVX512_CORE_AMX", "amx_bf16"),
        ("DEFAULT", "amx_bf16"),
    ],
)
def test_onednn_isa_cap_masks_the_units(tmp_path, monkeypatch, cap, expected):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert precision.cpu_bf16_units(cpuinfo(tmp_path, "avx512_bf16", "amx_bf16")) == expected


def test_auto_picks_bfloat16_here_and_float32_when_the_units_are_masked(monkeypatch):
    """On this machine (AVX512-BF16 or AMX) auto is bfloat16; capped below them, oneDNN cannot use them: float32."""
    if precision.cpu_bf16_units() not in precision.BF16_UNITS:
        pytest.skip(f"this CPU has no bfloat16 units ({precision.cpu_bf16_units()})")
    assert precision.resolve("auto", CPU) == "bfloat16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    assert precision.resolve("auto", CPU) == "float32"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")  # oneDNN's former name for the same cap
    assert precision.resolve("auto", CPU) == "float32"


def test_explicit_settings_are_kept_and_unknown_ones_refused(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert precision.resolve("bfloat16", CPU) == "bfloat16"  # asked for: emulated, slower, but as asked
    assert precision.resolve("float32", CPU) == "float32"
    with pytest.raises(ValueError, match=r"features\.precision must be one of"):
        precision.resolve("float16", CPU)


def test_params_accept_auto_and_refuse_others():
    from dataclasses import replace

    from dermsynth.core import config

    params = config.load()
    assert params.features.precision in precision.PRECISIONS
    bad = replace(params, features=replace(params.features, precision="half"))
    with pytest.raises(config.ConfigError, match=r"features\.precision must be auto, float32 or bfloat16"):
        bad.check()
