"""tools/gpu_check.sh: its CPU dry run (how the script is tested before a GPU is lent).

Without CUDA the script collects and skips the CUDA tests, runs every other section on the
CPU at tiny sizes (here with the test-only tinynet, known to the subprocesses through the
``subprocess_env`` hook) and skips the compile runs, saying so in ``summary.txt``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run is the path without CUDA")
def test_dry_run_completes_and_reports_skips(tmp_path, subprocess_env):
    out = tmp_path / "out"
    env = dict(subprocess_env, PYTHON=sys.executable, GPU_CHECK_NET="tinynet", OUT=str(tmp_path / "not-this"))
    proc = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), str(out), "--quick"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)  # a hang guard, not a speed check
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 0, summary + proc.stderr
    assert not (tmp_path / "not-this").exists()  # the folder argument wins over $OUT
    assert "no CUDA device: a dry run on the CPU" in summary
    sections = {line.split()[0]: line for line in summary.splitlines() if line.split()[0] not in ("note:", "total:")}
    for name in ("env", "pytest_cuda", "bench_compute", "bench_loaders", "train_gpu", "eval_gpu"):
        assert " ok " in sections[name] or "skipped" in sections[name], summary
    assert "skipped" in sections["bench_compiled"] and "no CUDA" in sections["bench_compiled"]
    assert "skips: needs a CUDA device" in summary and "total:" in summary.splitlines()[-1]
    skipped = int(summary.split(" skipped in ")[0].split()[-1])
    assert skipped >= 10  # every CUDA test collected, none run
    compute = json.loads((out / "bench_compute.json").read_text())["compute"]
    assert [r["mode"] for r in compute] == ["baseline", "fast"] and all(r["img_s"] > 0 for r in compute)
    loaders = json.loads((out / "bench_loaders.json").read_text())
    assert [r["loader"] for r in loaders["loader"]] == ["pil", "gpu", "reference"]
    assert {r["loader"] for r in loaders["end_to_end"]} == {"pil", "gpu", "reference"}
    assert "(decoded on the device)" in (out / "train_gpu.out").read_text()
    assert json.loads((out / "train" / "summary.json").read_text())["device"] == "cpu"
    assert " * Acc@1" in (out / "eval_gpu.out").read_text()
    tables = (out / "tables.txt").read_text()
    assert "speed-up over baseline" in tables and "loader only" in tables
    commands = (out / "commands.txt").read_text()
    assert "tools/bench.py --device cpu" in commands and "--data-backend gpu" in commands


def test_unknown_option_is_one_line(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), str(tmp_path), "--fast"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "unknown option" in proc.stderr
