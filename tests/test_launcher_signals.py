"""Signals through the launcher scripts (test/common.sh): Ctrl-C on the script's process group,
SIGTERM to the script's PID alone (a scheduler, ``kill``), SIGTERM to the group. Real bash, real
trainers (main.py, main_8p.py with two gloo workers), real signals: the trainer saves and exits
130/143, the script exits with that code, prints its one stop line instead of the closing
lines, the log copy holds the trainer's stop line, and no process outlives the script."""

import os
import signal
import time
from pathlib import Path

import pytest

import main
from classify.checkpoint import load_checkpoint
from tests import test_launchers
from tests.conftest import launcher_output
from tests.test_launchers import start

new_id = test_launchers.new_id  # the fixture: fresh device ids, their folders removed at the end

# A run that never ends by itself (1000 epochs of 60 steps): only the signal stops it.
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]  # the bash launchers, signalled
LONG = ["--arch=tinynet", "--dummy", "--dummy-size", "480,40", "--num-classes", "4", "--image_size=16",
        "--batch_size=8", "-p", "5", "--device=cpu", "--epochs=1000"]
CASES = {"int_group": ("train_full_1p.sh", signal.SIGINT, "group", ["--workers=1"]),  # a loader worker too
         "term_pid": ("train_full_1p.sh", signal.SIGTERM, "pid", ["--workers=0"]),
         "term_group_8p": ("train_full_8p.sh", signal.SIGTERM, "group", ["--workers=0", "--rank_size=2"])}


START_AHEAD = ("signalled",)  # conftest's _start_ahead


@pytest.fixture(scope="module")
def signalled(new_id, subprocess_env):
    """All three cases started together, each signalled once its log shows training steps."""
    runs = {}
    for name, (script, _, _, extra) in CASES.items():
        device_id = new_id()
        runs[name] = (start(script, *LONG, *extra, f"--device_id={device_id}", env=subprocess_env), device_id)
    yield runs
    for run, _ in runs.values():
        run.kill()


def _wait_for_steps(run, log: Path, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.is_file() and "Epoch: [" in log.read_text():
            return
        assert run.proc.poll() is None, run.result().stderr[-3000:]
        time.sleep(0.2)
    pytest.fail(f"no step line in {log} after {timeout} s")


def _survivors(device_id):
    """Processes whose command line names this run's output folder (trainer, workers, tees)."""
    needle = f"test/output/{device_id}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if needle in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_signal_through_the_launcher(case, signalled, capsys):
    script, sig, target, extra = CASES[case]
    run, device_id = signalled[case]
    folder = launcher_output() / str(device_id)
    log = folder / f"train_{device_id}.log"
    _wait_for_steps(run, log)
    (os.killpg if target == "group" else os.kill)(run.proc.pid, sig)
    proc = run.result(timeout=240)
    assert proc.returncode == 128 + sig, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _survivors(device_id) == []
    text = log.read_text()
    assert f"=> stopped by {sig.name} at epoch " in text and "checkpoint saved to" in text, text[-2000:]
    assert "Final " not in proc.stdout and "exited with code" not in proc.stderr
    stop_line = [line for line in proc.stderr.splitlines() if line.startswith(f"=> {script}: stopped")]
    assert stop_line == [f"=> {script}: stopped by {sig.name} (exit {128 + sig}); checkpoint "
                         f"{folder}/checkpoint.pth.tar; run the same command to continue it "
                         "(--resume auto)"]
    assert stop_line[0] in text  # the log copy outlived the signal
    ckpt = load_checkpoint(folder / "checkpoint.pth.tar")
    assert ckpt["epoch"] >= 0 and "optimizer" in ckpt
    # resumable: the same command would continue it (the launcher's check, in this process)
    assert main.main(["--check", *LONG, f"--output-dir={folder}", "--resume=auto"]) == 0
    assert f"checkpoint = {folder / 'checkpoint.pth.tar'} (--resume auto)" in capsys.readouterr().out
