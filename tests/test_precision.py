"""The CPU's precision and memory-format defaults: native-bf16 detection (classify.devices), the
autocast default it picks (classify.amp), channels_last (classify.fast), and the flags that win.

The detection is monkeypatched at its root (``devices.cpu_flags``), so every test runs the same
on any CPU."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch

import main
import models
from classify import devices
from classify.amp import resolve_amp
from classify.fast import use_channels_last
from models import ModelEntry
from tests import tinynet
from tests.conftest import tiny_args

CPU = torch.device("cpu")
WITH_BF16, WITHOUT_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"}), frozenset({"avx2", "avx512f"})


@pytest.fixture
def cpu_has(monkeypatch):
    """cpu_has(True|False): this process's CPU now has (or lacks) native bf16."""
    def set_native(native: bool):
        monkeypatch.setattr(devices, "cpu_flags", lambda: WITH_BF16 if native else WITHOUT_BF16)
    return set_native


def test_cpuinfo_flags_x86_and_arm():
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd sve bf16 svebf16\nCPU part\t: 0xd40\n"
    old = "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
    assert {"avx2", "avx512_bf16"} <= devices.cpuinfo_flags(x86)
    assert devices.cpuinfo_flags(x86) & devices.NATIVE_BF16_FLAGS == {"avx512_bf16"}
    assert devices.cpuinfo_flags(arm) & devices.NATIVE_BF16_FLAGS == {"bf16", "svebf16"}
    assert not devices.cpuinfo_flags(old) & devices.NATIVE_BF16_FLAGS
    assert isinstance(devices.cpu_native_bf16(), bool)  # this machine's answer, whatever it is


def _amp(**kw):
    base = {"asked": False, "opt_level": None, "recipe_opt_level": "O1", "loss_scale": None, "dtype": "auto"}
    amp = resolve_amp(CPU, **{**base, **kw})
    return amp.dtype if amp.enabled else None


def test_cpu_with_native_bf16_defaults_to_bf16(cpu_has):
    cpu_has(True)
    assert _amp() == torch.bfloat16  # the recipe's mixed precision, in bf16
    assert _amp(asked=True) == torch.bfloat16
    # the flags that turn it off, or pick another dtype, win
    assert _amp(dtype="fp32") is None and _amp(asked=True, dtype="fp32") is None
    assert _amp(opt_level="O0") is None
    assert _amp(recipe_opt_level="O0") is None  # a recipe that trains in fp32 stays fp32
    assert _amp(dtype="fp16") == torch.float16


def test_cpu_without_native_bf16_stays_fp32_unless_asked(cpu_has):
    cpu_has(False)
    assert _amp() is None  # emulated bf16 is slower than fp32 there
    assert _amp(asked=True) == torch.bfloat16  # --amp
    assert _amp(dtype="bf16", recipe_opt_level="O0") == torch.bfloat16  # --amp-dtype bf16 asks for it
    assert _amp(dtype="fp16") == torch.float16
    assert _amp(asked=True, dtype="fp32") is None


def test_channels_last_default_and_flags():
    npu = SimpleNamespace(type="npu")  # torch without torch_npu cannot name the device; only .type is read
    assert use_channels_last(CPU, None) and use_channels_last(torch.device("cuda"), None)
    assert not use_channels_last(npu, None)
    assert not use_channels_last(CPU, False) and use_channels_last(npu, True)  # --no-channels-last / --channels-last


@pytest.fixture
def tiny_mixed():
    """tinynet with a recipe that trains in mixed precision (O1), as every real net's recipe does."""
    recipe = dataclasses.replace(tinynet.RECIPE, name="tinymixed_test", arch="tinymixed", opt_level="O1")
    models.register_model(ModelEntry(name="tinymixed", build=tinynet.build, recipes={recipe.name: recipe},
                                     default_recipe=recipe.name, min_image_size=8))
    yield
    models.unregister_model("tinymixed")


@pytest.mark.parametrize("native, flags, expected", [
    (True, [], "amp bfloat16"), (True, ["--amp-dtype", "fp32"], "amp off"), (False, [], "amp off"),
    (False, ["--amp"], "amp bfloat16")])
def test_the_trainer_takes_the_default(image_folder, tmp_path, capsys, cpu_has, tiny_mixed, native, flags,
                                       expected):
    cpu_has(native)
    args = tiny_args(image_folder, tmp_path, "-a", "tinymixed", "--epochs", "1", "--stop-step-num", "2", *flags)
    assert main.main([str(a) for a in args]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("=> tinymixed"))
    assert header.endswith(expected), header
