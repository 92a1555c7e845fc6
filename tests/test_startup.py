"""Values that train garbage are refused, and one line at every stage of the start-up
(issue 17, sections 3 and 4): real processes, real signals, real folders."""

import os
import signal
import time

import main
from tests.conftest import start_main, tiny_args

DUMMY = ["--dummy", "--dummy-size", "200,8", "--num-classes", "4", "--image-size", "16", "-a", "tinynet",
         "--workers", "0", "--stop-step-num", "1", "-p", "1"]


def _run(capsys, *argv):
    code = main.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


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
    code, out, err = _run(capsys, *DUMMY, "-b", "160", "--lr", "0.000078", "--lr-scheduler", "constant", "--output-dir", tmp_path / "b")
    assert code == 0, err
    assert "warning: batch" not in out and "lr 7.8e-05" in out  # the header
    step = next(line for line in out.splitlines() if line.startswith("Epoch: ["))
    assert "  LR 7.8e-05  " in step
