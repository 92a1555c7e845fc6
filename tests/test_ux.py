"""--prof trace, --tensorboard events, curves.png, progress lines."""

import pytest

from tests.conftest import tiny_args as tiny
from tests.conftest import train_in_process as run


def test_prof_writes_trace_and_table(image_folder, tmp_path, capsys):
    log = run(capsys, *tiny(image_folder, tmp_path, "--prof"))
    trace, table = tmp_path / "profile" / "trace.json", tmp_path / "profile" / "top_ops.txt"
    assert trace.stat().st_size > 1000 and '"traceEvents"' in trace.read_text()[:2000]
    assert "aten::convolution" in table.read_text() or "aten::conv2d" in table.read_text()
    assert "profile written" in log and not (tmp_path / "checkpoint.pth.tar").exists()


def test_tensorboard_and_curves(image_folder, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    pytest.importorskip("matplotlib")
    run(capsys, *tiny(image_folder, tmp_path, "--epochs", "2", "--tensorboard"))
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"loss/train", "acc1/val", "lr", "img_per_s"} <= set(acc.Tags()["scalars"])
    assert len(acc.Scalars("acc1/val")) == 2
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stop_step_num(image_folder, tmp_path, capsys):
    log = run(capsys, *tiny(image_folder, tmp_path, "--epochs", "5", "--stop-step-num", "6", "-p", "1"))
    steps = [line for line in log.splitlines() if line.startswith("Epoch:")]
    assert len(steps) == 6 and "Epoch: [1][1/4]" in steps[-1]
