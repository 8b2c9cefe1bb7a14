"""--precision auto: bf16 only where the device computes it natively (mssfs.core.device)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from faults_support import call_cli

from mssfs.core import device as device_mod
from mssfs.core.device import cpu_has_native_bf16, resolve_precision
from mssfs.train.distributed import autocast_dtype


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Set whether the CPU counts as having bfloat16 instructions."""

    def set_native(value: bool):
        monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: value)

    return set_native


@pytest.fixture
def fake_cpuinfo(monkeypatch):
    """Replace torch's CPU checks and /proc/cpuinfo with a given flags line (None: unreadable)."""

    def set_info(text: str | None, machine: str = "x86_64"):
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
            monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
        real = Path.read_text

        def read_text(self, *args, **kwargs):
            if str(self) != "/proc/cpuinfo":
                return real(self, *args, **kwargs)
            if text is None:
                raise OSError("no such file")
            return text

        monkeypatch.setattr(Path, "read_text", read_text)
        monkeypatch.setattr(device_mod.platform, "machine", lambda: machine)
        cpu_has_native_bf16.cache_clear()

    yield set_info
    cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize("text, machine, expected", [
    ("flags\t: fpu sse2 avx2 fma avx512f avx512_bf16", "x86_64", True),
    ("flags\t: fpu amx_bf16 amx_tile", "x86_64", True),
    ("flags\t: fpu sse2 avx2 fma avx512f", "x86_64", False),
    ("Features\t: fp asimd bf16 i8mm", "aarch64", True),
    ("Features\t: fp asimd", "aarch64", False),
    (None, "x86_64", False),
])
def test_native_bf16_from_cpu_flags(fake_cpuinfo, text, machine, expected):
    fake_cpuinfo(text, machine)
    assert cpu_has_native_bf16() is expected


def test_native_bf16_from_torch(fake_cpuinfo, monkeypatch):
    fake_cpuinfo("flags\t: fpu avx2")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16()


@pytest.mark.parametrize("native", [True, False])
def test_resolve_precision(cpu_bf16, native):
    cpu_bf16(native)
    assert resolve_precision("fp32", "cpu") == (False, None)
    assert resolve_precision("auto", "cpu") == (native, None)
    bf16, note = resolve_precision("bf16", "cpu")
    assert bf16 and ((note is None) == native)
    if note:
        assert "emulated" in note and "--precision auto" in note and "\n" not in note
    # GPUs: auto keeps fp32 (bf16 gives no gain at these sizes); bf16 asked for is kept, without a note
    assert resolve_precision("auto", "cuda") == (False, None)
    assert resolve_precision("bf16", "cuda") == (True, None)
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", "cpu")


@pytest.mark.parametrize("native", [True, False])
def test_training_auto_follows_the_cpu(cpu_bf16, native):
    cpu_bf16(native)
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) == (torch.bfloat16 if native else None)
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    assert autocast_dtype("fp32", cpu) is None


@pytest.mark.parametrize("precision, native, noted", [
    ("bf16", False, True), ("bf16", True, False), ("auto", False, False), ("fp32", False, False),
])
def test_sample_notes_slow_bf16(cpu_bf16, tmp_path, precision, native, noted):
    cpu_bf16(native)
    code, err = call_cli(["sample", "stimulus:circles", "--samples", "1", "--precision", precision,
                          "--device", "cpu", "--out", tmp_path / "o", "--check"])
    assert code == 0, err
    assert ("mssfs sample: note: bf16 on this CPU is emulated" in err) is noted
    assert not (tmp_path / "o" / "circles").exists()  # --check samples nothing


def test_precision_default_is_auto():
    from mssfs.cli import build_parser

    p = build_parser()
    assert p.parse_args(["sample", "x.png", "--out", "r"]).precision == "auto"
    assert p.parse_args(["evaluate", "--suite", "objects", "--out", "e"]).precision == "auto"


@pytest.mark.parametrize("native", [True, False])
def test_python_api_auto_follows_the_cpu(cpu_bf16, native):
    from test_sampling import sphere_image, tiny_model, tiny_schedule

    import mssfs

    cpu_bf16(native)
    kw = dict(n=1, model=tiny_model(), schedule=tiny_schedule(num_steps=2), device="cpu", progress=False)
    assert mssfs.sample(sphere_image(24, 24), bf16="auto", **kw).bf16 is native
    assert mssfs.sample(sphere_image(24, 24), **kw).bf16 is False  # the default stays float32
    with pytest.raises(ValueError, match="bf16 must be True, False or 'auto', got 'yes'"):
        mssfs.sample(sphere_image(24, 24), bf16="yes", **kw)
