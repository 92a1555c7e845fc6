"""Values that train garbage are refused, and one line at every stage of the start-up
(issue 17, sections 3 and 4): real processes, real signals, real folders."""

import os
import sys

import main
from tests.conftest import Background, start_main, tiny_args
from tests.conftest import run_in_process as _run

DUMMY = ["--dummy", "--dummy-size", "200,8", "--num-classes", "4", "--image-size", "16", "-a", "tinynet",
         "--workers", "0", "--stop-step-num", "1", "-p", "1"]


def test_a_batch_larger_than_the_training_set_is_one_line(image_folder, tmp_path, capsys):
    code, _, err = _run(capsys, *tiny_args(image_folder, tmp_path / "o")[:-2], "-b", "100000",
                        "--output-dir", tmp_path / "o")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "global batch 100000 is larger than the 36 training images" in lines[0]
    assert not (tmp_path / "o").exists()


def test_lr_scaled_far_warns_unless_given_and_small_lr_shows(tmp_path, capsys):
    code, out, err = _run(capsys, *DUMMY, "-b", "160", "--output-dir", tmp_path / "a")  # tinynet: 0.05 @ 8
    assert code == 0, err
    assert "warning: batch 160 scales the recipe's lr 0.05 (batch 8) 20x to 1; " in out and "--lr" in out
    code, out, err = _run(capsys, *DUMMY, "-b", "160", "--lr", "0.000078", "--lr-scheduler", "constant",
                          "--output-dir", tmp_path / "b")
    assert code == 0, err
    assert "warning: batch" not in out and "lr 7.8e-05" in out  # the header
    step = next(line for line in out.splitlines() if line.startswith("Epoch: ["))
    assert "  LR 7.8e-05  " in step


def test_unwritable_home_without_data_path_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "home"  # under a file: not creatable, even for root
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CACHE_HOME", "CLASSIFY_DEMO_DIR"):
        monkeypatch.delenv(name, raising=False)
    where = f"cannot create the demo set in '{home}/.cache/classify/demo-v2'"
    code, _, err = _run(capsys, "-a", "tinynet", "--output-dir", tmp_path / "o")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and where in lines[0] and "CLASSIFY_DEMO_DIR" in lines[0], err
    assert main.main(["--check", "-a", "tinynet", "--output-dir", str(tmp_path / "o")]) == 1
    assert where in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_half_written_demo_folder_is_one_line(tmp_path, monkeypatch, capsys):
    demo = tmp_path / "demo"
    (demo / "train" / "circle").mkdir(parents=True)  # a copy cut short: no completion marker
    monkeypatch.setenv("CLASSIFY_DEMO_DIR", str(demo))
    for argv in (["-a", "tinynet"], ["--check", "-a", "tinynet"]):
        code, _, err = _run(capsys, *argv, "--output-dir", tmp_path / "o")
        lines = err.strip().splitlines()
        assert code in (1, 2) and len(lines) == 1 and "is not a complete demo set" in lines[0], err
    assert (demo / "train" / "circle").is_dir()  # never deleted: it may be the user's


def test_resume_a_folder_says_so(image_folder, tmp_path, capsys):
    for argv in (tiny_args(image_folder, tmp_path / "o", "--resume", tmp_path),
                 ["--check", *tiny_args(image_folder, tmp_path / "o", "--resume", tmp_path)]):
        code, _, err = _run(capsys, *argv)
        assert code in (1, 2) and f"checkpoint '{tmp_path}' is a folder, not a file" in err, err
        assert "checkpoint.pth.tar" in err and "--resume auto" in err


SIGINT_ON_IMPORT = """import importlib.abc, os, signal, sys
class _Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["SIGINT_ON_IMPORT"]:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, while this module is imported
        return None
sys.meta_path.insert(0, _Interrupt())
"""


def test_ctrl_c_during_start_up_and_one_worker_warning(image_folder, tmp_path):
    """SIGINT inside ``import torch`` (main.py's first lines) and inside main() before training
    (``classify.run``'s import, beside the data scan): exit 130, one line, no folder. And more
    loader workers than CPUs: our warning, not PyTorch's as well."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SIGINT_ON_IMPORT)
    procs = {}
    for module in ("torch", "classify.run"):
        env = dict(os.environ, PYTHONPATH=str(hook), SIGINT_ON_IMPORT=module)
        procs[module] = Background([sys.executable, "main.py", image_folder, "--output-dir", tmp_path / module],
                                   env=env)
    workers = os.cpu_count() + 1
    many = start_main(image_folder, "-a", "tinynet", "-b", "8", "-j", workers, "--stop-step-num", "1",
                      "--epochs", "1", "--output-dir", tmp_path / "many")
    for module, proc in procs.items():
        result = proc.result(timeout=120)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 130 and len(lines) == 1, result.stderr[-2000:]
        assert lines[0].startswith("error: interrupted") and not (tmp_path / module).exists()
    result = many.result(timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count(f"warning: {workers} loader workers") == 1
    assert "This DataLoader will create" not in result.stderr, result.stderr
