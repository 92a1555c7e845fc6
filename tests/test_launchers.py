"""The ModelZoo launcher scripts in test/ (docs/architecture.md, "Contracts").

Real runs, shared by the tests through module-scoped fixtures, at 32 px on the tiny
``image_folder`` tree, no loader workers. Full 1p (from the repo root, default device), eval 1p
of its checkpoint (from test/), its continuation (in a copy of its output dir) and full 8p
with two gloo processes train the test-only ``tinynet`` (``--arch=tinynet``, known to the
subprocesses through conftest's ``subprocess_env``): the scripts are under test, not the
network. Performance 1p on a stand-in demo set keeps the default arch (GoogLeNet, 2 steps)
covered. Runs that need no other run start together when the module starts (conftest's
``start_ahead``) and run side by side. Everything else (bad data paths, missing checkpoint,
usage errors) is caught before anything starts: the flags' own mistakes in bash, in
milliseconds, the rest by the scripts' one ``main.py --check`` / ``main_8p.py --check`` call
(a Python start-up each; the check itself is tests/test_check.py's). Outputs go to
test/output/<device id>/ under the session's tmp dir (conftest's ``launcher_output``: the
scripts' ``CLASSIFY_TEST_OUTPUT_ROOT``), with ids unique to this process, removed afterwards.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from itertools import count

import pytest

from classify.data import demo
from tests.conftest import ROOT, Background, assert_one_line_error, launcher_output, start_ahead

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]  # the bash launchers
TEST_DIR = ROOT / "test"
SCRIPTS = [f"train_{mode}_{scale}.sh" for mode in ("full", "performance", "eval") for scale in ("1p", "8p")]
TINY = ["--arch=tinynet", "--image_size=32", "--batch_size=12", "--epochs=1", "--workers=0"]
KEYS = ["Network", "RankSize", "BatchSize", "DeviceType", "CaseName", "ActualFPS", "TrainingTime",
        "TrainAccuracy", "ActualLoss", "E2ETrainingTime"]
CLOSING = re.compile(r"Final Performance images/sec : (\S+)\nFinal Train Accuracy : (\S+)\n"
                     r"E2E Training Duration sec : (\d+)\n\Z")
_ids = count(os.getpid() * 10)


def start(script, *args, cwd=ROOT, env=None) -> Background:
    """``bash <script> ARGS`` from ``cwd`` (the repo root or test/), the way users run them,
    started; ``env``: the environment (default ours), ``$PYTHON`` this interpreter."""
    path = os.path.relpath(TEST_DIR / script, cwd)
    return Background(["bash", path, *args], env=dict(env or os.environ, PYTHON=sys.executable), cwd=cwd)


def launch(script, *args, cwd=ROOT, env=None, timeout=300) -> subprocess.CompletedProcess:
    """``start`` and wait for it."""
    return start(script, *args, cwd=cwd, env=env).result(timeout)


def launch_all(*runs, timeout=300):
    """Several ``(script, args, kwargs)`` started together (each waits on a Python start-up),
    their CompletedProcesses in order."""
    started = [start(script, *args, **kwargs) for script, args, kwargs in runs]
    return [run.result(timeout) for run in started]


START_AHEAD = ("full_1p_started", "perf_1p_started", "full_8p_started", "failing_trainer_started",
               "too_few_devices_started")  # conftest's _start_ahead


def started(new_id, script, *args, **kwargs):
    """A module fixture's body: start ``script`` with a fresh device id; kill it at teardown if
    a failed test left it running."""
    device_id = new_id()
    run = start(script, *args, f"--device_id={device_id}", **kwargs)
    yield run, device_id
    run.kill()


@pytest.fixture(scope="module")
def new_id():
    """A fresh device id (= output folder test/output/<id>/) per call; all removed at the end."""
    used = []

    def _new():
        used.append(next(_ids))
        return used[-1]

    yield _new
    for i in used:
        shutil.rmtree(launcher_output() / str(i), ignore_errors=True)


class Run:
    """One finished launcher run: its process, output folder and parsed reports."""

    def __init__(self, proc, device_id, kind):
        self.proc, self.dir, self.kind = proc, launcher_output() / str(device_id), kind
        self.train_log = (self.dir / f"train_{device_id}.log").read_text() if proc.returncode == 0 else ""
        m = CLOSING.search(proc.stdout)
        self.fps, self.acc, self.e2e = m.groups() if m else (None, None, None)
        logs = list(self.dir.glob(f"*p_{kind}.log"))
        self.case = _key_values(logs[0]) if len(logs) == 1 else {}

    def check(self):
        assert self.proc.returncode == 0, self.proc.stdout[-3000:] + self.proc.stderr[-3000:]
        assert self.fps is not None, f"no closing lines at the end of stdout:\n{self.proc.stdout[-2000:]}"
        assert list(self.case) == KEYS
        name = self.case["CaseName"]
        assert (self.dir / f"{name}.log").is_file()
        assert name == "{Network}_bs{BatchSize}_{RankSize}p_".format(**self.case) + self.kind
        assert self.case["E2ETrainingTime"] == self.e2e and int(self.e2e) > 0
        assert self.case["TrainAccuracy"] == self.acc and self.case["ActualFPS"] == self.fps
        steps = [line for line in self.train_log.splitlines() if line.startswith("Epoch: [")]
        losses = (self.dir / f"train_{name}_loss.txt").read_text().split()
        assert losses == [line.split("Loss ")[1].split()[0] for line in steps]
        if losses:
            assert self.case["ActualLoss"] == losses[-1]
        return self


def _key_values(path):
    pairs = [line.split(" = ", 1) for line in path.read_text().splitlines()]
    return {k: v for k, v in pairs}


def _command(run):
    """The trainer command the script ran (its first ``=> `` line naming main.py/main_8p.py)."""
    return next(line for line in run.train_log.splitlines() if line.startswith("=> ") and "main" in line)


@pytest.fixture(scope="module")
def full_1p_started(image_folder, new_id, subprocess_env):
    yield from started(new_id, "train_full_1p.sh", f"--data_path={image_folder}", *TINY,
                       env=subprocess_env)


@pytest.fixture(scope="module")
def full_1p(full_1p_started, request):
    run, device_id = full_1p_started
    done = Run(run.result(), device_id, "acc")
    start_ahead(request, "eval_1p_started", "continued_started")  # the runs that read its checkpoints
    return done


@pytest.fixture(scope="module")
def eval_1p_started(full_1p_started, image_folder, subprocess_env):
    """Eval 1p of the full run's model_best (its default --pth_path), from test/, on the val/
    split folder itself (MindSpore style, as main.py reads it)."""
    full, device_id = full_1p_started
    full.result()
    data = os.path.relpath(image_folder / "val", TEST_DIR)  # relative to where the user stands
    run = start("train_eval_1p.sh", f"--data_path={data}", "--arch=tinynet", "--image_size=32", "--batch_size=12",
                "--workers=0", "--device=cpu", f"--device_id={device_id}", cwd=TEST_DIR, env=subprocess_env)
    yield run, device_id
    run.kill()


@pytest.fixture(scope="module")
def continued_started(full_1p_started, image_folder, new_id, subprocess_env):
    """The full run continued for a 2nd epoch, in a copy of its output dir (so that it runs beside
    the eval run, which reads the original)."""
    full, full_id = full_1p_started
    full.result()
    device_id = new_id()
    shutil.copytree(launcher_output() / str(full_id), launcher_output() / str(device_id))
    # its log too, under this id's name: the continued run appends to it (#23)
    shutil.copy(launcher_output() / str(full_id) / f"train_{full_id}.log",
                launcher_output() / str(device_id) / f"train_{device_id}.log")
    run = start("train_full_1p.sh", f"--data_path={image_folder}", "--arch=tinynet", "--image_size=32",
                "--batch_size=12", "--workers=0", "--device=cpu", "--epochs=2", f"--device_id={device_id}",
                env=subprocess_env)
    yield run, device_id
    run.kill()


@pytest.fixture(scope="module")
def full_8p_started(image_folder, new_id, subprocess_env):
    yield from started(new_id, "train_full_8p.sh", "--data_path", image_folder, *TINY, "--device=cpu",
                       "--rank_size=2", env=subprocess_env)


@pytest.fixture(scope="module")
def full_8p(full_8p_started):
    run, device_id = full_8p_started
    return Run(run.result(), device_id, "acc")


@pytest.fixture(scope="module")
def demo_dir(image_folder, tmp_path_factory):
    """A stand-in for the built-in demo set: the tiny tree with the demo's completion marker."""
    root = tmp_path_factory.mktemp("demo") / "demo-v1"
    shutil.copytree(image_folder, root)
    (root / demo._MARKER).write_text("{}")
    return root


@pytest.fixture(scope="module")
def perf_1p_started(demo_dir, new_id, subprocess_env):
    # no --arch: the scripts' default (GoogLeNet), 2 steps at 32 px
    yield from started(new_id, "train_performance_1p.sh", "--image_size=32", "--batch_size=12",
                       "--workers=0", "--stop_step_num=2", "--device=cpu", cwd=TEST_DIR,
                       env=dict(subprocess_env, CLASSIFY_DEMO_DIR=str(demo_dir)))


@pytest.fixture(scope="module")
def perf_1p(perf_1p_started):
    run, device_id = perf_1p_started
    return Run(run.result(), device_id, "perf")


def test_full_1p(full_1p):
    run = full_1p.check()
    assert run.case["CaseName"] == "tinynet_bs12_1p_acc"
    assert run.case["RankSize"] == "1" and run.case["DeviceType"] in ("cpu", "cuda", "npu")
    assert 0 <= float(run.acc) <= 100 and float(run.fps) > 0
    # ms per step of 12 images, printed with 2 decimals
    assert float(run.case["TrainingTime"]) == pytest.approx(12 * 1000 / float(run.fps), rel=1e-3, abs=0.006)
    assert re.search(r"^ \* Acc@1 ", run.train_log, re.M) and "FPS@all" in run.train_log
    for name in ("checkpoint.pth.tar", "model_best.pth.tar", "summary.json", "metrics.jsonl", "config.json"):
        assert (run.dir / name).is_file(), name
    config = json.loads((run.dir / "config.json").read_text())  # the resolved configuration
    assert (config["arch"], config["optim"]["batch_size"], config["data"]["image_size"]) == ("tinynet", 12, 32)
    command = _command(run)
    assert " main.py " in command
    assert "--arch=tinynet --batch-size=12 --epochs=1 --workers=0 --image-size=32" in command
    assert "--output-dir=" + str(run.dir) in command and "--no-val" not in command
    assert f"--device={run.case['DeviceType']} " in command  # the kind the check resolved
    assert "--resume" not in command and "continuing it" not in run.proc.stdout  # a fresh run
    assert "demo set" not in run.proc.stdout


def test_eval_1p_reads_the_full_run_checkpoint_from_test_dir(full_1p, eval_1p_started, image_folder):
    run, device_id = eval_1p_started  # default --pth_path: test/output/<id>/model_best.pth.tar
    run = Run(run.result(), device_id, "eval").check()
    assert run.case["CaseName"] == "tinynet_bs12_1p_eval"
    assert run.acc == full_1p.acc  # same weights, same val set (given as val/ itself)
    given = re.search(r"--data_path=(\S+)", _command(run)).group(1)
    assert os.path.realpath(given) == os.path.realpath(image_folder / "val")
    assert run.fps == "N/A" and run.case["TrainingTime"] == "N/A"
    assert f"-e --resume={full_1p.dir / 'model_best.pth.tar'}" in _command(run)
    assert (full_1p.dir / "tinynet_bs12_1p_acc.log").is_file()  # the training reports stay
    # the accuracy run's log moved aside, whole, before the evaluation wrote train_<id>.log (#23)
    [aside] = full_1p.dir.glob(f"train_{device_id}.*.log")
    assert re.fullmatch(rf"train_{device_id}\.\d{{8}}-\d{{6}}\.log", aside.name)
    assert aside.read_text() == full_1p.train_log and " * Acc@1" in run.train_log
    assert f"=> the previous train_{device_id}.log moved to " in run.proc.stdout
    assert json.loads((full_1p.dir / "summary.json").read_text())["epochs"] == 1


def test_performance_1p_on_the_demo_set(perf_1p):
    run = perf_1p.check()
    assert run.case["CaseName"] == "googlenet_bs12_1p_perf"  # the default arch
    assert float(run.fps) > 0 and run.acc == "N/A"
    assert len((run.dir / f"train_{run.case['CaseName']}_loss.txt").read_text().split()) == 2
    assert " * Acc@1" not in run.train_log
    assert run.proc.stdout.startswith("=> no --data_path: using the built-in demo set")
    command = _command(run)
    assert "--stop-step-num=2 --no-val" in command and "--data" not in command
    assert f"--output-dir={run.dir / 'perf'}" in command  # its own folder: an accuracy run's checkpoints stay
    assert (run.dir / "perf" / "checkpoint.pth.tar").is_file() and not (run.dir / "checkpoint.pth.tar").exists()
    assert "--epochs" not in command and "--lr" not in command  # the demo profile's schedule
    assert "--arch" not in command


def test_full_8p_two_gloo_processes(full_8p):
    run = full_8p.check()
    assert run.case["CaseName"] == "tinynet_bs12_2p_acc"
    assert run.case["RankSize"] == "2" and run.case["DeviceType"] == "cpu"
    assert 0 <= float(run.acc) <= 100 and float(run.fps) > 0
    assert f" main_8p.py --device=cpu --device-id={run.dir.name} --nproc_per_node=2 " in _command(run)
    assert "on cpu x2" in run.train_log
    assert (run.dir / "model_best.pth.tar").is_file()


def _assert_one_line_error(proc, device_id, *fragments):
    assert_one_line_error(proc.returncode, proc.stderr, *fragments, exit_code=1, out=proc.stdout)
    assert not (launcher_output() / str(device_id)).exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_data_path_is_one_line_before_anything_starts(script, tmp_path, new_id):
    device_id = new_id()
    (tmp_path / "notval" / "train" / "a").mkdir(parents=True)  # no val/
    missing, no_val = launch_all(
        (script, [f"--data_path={tmp_path / 'nonexistent'}", f"--device_id={device_id}"], {}),
        (script, ["--data_path", tmp_path / "notval", f"--device_id={device_id}"], {"cwd": TEST_DIR}))
    _assert_one_line_error(missing, device_id, "does not exist", "nonexistent")
    _assert_one_line_error(no_val, device_id, "has no val/", str(tmp_path / "notval"))


@pytest.mark.parametrize("script", ["train_eval_1p.sh", "train_eval_8p.sh"])
def test_missing_checkpoint_is_one_line(script, image_folder, new_id):
    device_id = new_id()
    default, given = launch_all(
        (script, [f"--data_path={image_folder}", f"--device_id={device_id}"], {}),
        (script, [f"--data_path={image_folder}", "--pth_path=missing.pth.tar", f"--device_id={device_id}"],
         {"cwd": TEST_DIR}))
    _assert_one_line_error(default, device_id, f"test/output/{device_id}/model_best.pth.tar", "not found")
    _assert_one_line_error(given, device_id, str(TEST_DIR / "missing.pth.tar"), "--pth_path")


def test_usage_errors_and_help(image_folder, new_id):
    device_id = new_id()
    cases = ((["--pth_path=x.pth.tar"], "train_eval"), (["--rank_size=2"], "train_full_8p.sh"),
             (["--epochs"], "needs a value"), (["--device_id=x"], "not a whole number"),  # bash: the flags
             (["--device=tpu"], "unknown --device 'tpu'"), (["--arch=nosuchnet"], "unknown arch 'nosuchnet'"),
             (["--bogus-flag"], "unrecognized arguments: --bogus-flag"))  # the check: what they name
    procs = launch_all(*(("train_full_1p.sh", [f"--data_path={image_folder}", f"--device_id={device_id}", *args],
                          {}) for args, _ in cases))
    for proc, (args, fragment) in zip(procs, cases):
        _assert_one_line_error(proc, device_id, fragment)
    proc = launch("train_performance_8p.sh", "--help")
    assert proc.returncode == 0 and "--data_path" in proc.stdout and "--rank_size" in proc.stdout


@pytest.fixture(scope="module")
def too_few_devices_started(image_folder, new_id):
    yield from started(new_id, "train_full_8p.sh", f"--data_path={image_folder}", "--device=cuda",
                       "--rank_size=999")


def test_too_few_devices_is_one_line(too_few_devices_started):
    import torch

    run, device_id = too_few_devices_started
    if torch.cuda.is_available():  # the check's count of visible devices
        _assert_one_line_error(run.result(), device_id, "--nproc_per_node 999 needs 999 cuda devices", "--rank_size")
    else:
        _assert_one_line_error(run.result(), device_id, "no CUDA device is visible", "--device cpu")


@pytest.fixture(scope="module")
def failing_trainer_started(image_folder, new_id, tmp_path_factory, subprocess_env):
    """A mistake the check cannot see (it checks that the checkpoint exists; the run reads it)."""
    garbage = tmp_path_factory.mktemp("garbage") / "model_best.pth.tar"
    garbage.write_bytes(b"")  # truncated to nothing
    yield from started(new_id, "train_eval_1p.sh", f"--data_path={image_folder}", f"--pth_path={garbage}",
                       "--arch=tinynet", "--image_size=32", "--workers=0", "--device=cpu", env=subprocess_env)


def test_trainer_failure_is_its_exit_code_without_closing_lines(failing_trainer_started):
    run, device_id = failing_trainer_started
    proc = run.result()
    assert proc.returncode == 2, proc.stdout + proc.stderr  # main.py's usage-error code
    error = next(line for line in proc.stderr.splitlines() if "model_best.pth.tar" in line)  # the run's
    assert error.startswith("error: checkpoint ") and "exited with code 2" in proc.stderr
    assert "Final " not in proc.stdout
    out = launcher_output() / str(device_id)
    assert [p.name for p in out.glob("*.log")] == [f"train_{device_id}.log"]
    assert error in (out / f"train_{device_id}.log").read_text()


def test_full_run_continues_from_its_checkpoint(full_1p, continued_started):
    """Auto-resume: a full script whose output dir holds a checkpoint continues it."""
    run, device_id = continued_started
    run = Run(run.result(), device_id, "acc").check()
    # the log goes on (#23): the earlier part kept, one `=> resumed` line, then the continuation
    assert len([line for line in run.train_log.splitlines() if line.startswith("=> resumed")]) == 1
    before, after = run.train_log.split("=> resumed", 1)
    assert "Epoch: [0]" in before and "Epoch: [0]" not in after and "Epoch: [1]" in after
    command = [line for line in before.splitlines() if line.startswith("=> ") and "main" in line][-1]
    assert "--resume=auto" in command
    assert run.proc.stdout.startswith(f"=> {run.dir} holds a checkpoint of this run: continuing it (--resume auto)")
    assert not list(run.dir.glob(f"train_{device_id}.*.log"))  # nothing moved aside: appended
    epochs = [json.loads(line)["epoch"] for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]


RUN_FILES = ("checkpoint.pth.tar", "model_best.pth.tar", "metrics.jsonl", "summary.json", "config.json")


def test_full_run_with_other_data_refuses_its_folder(full_1p, image_folder, tmp_path, subprocess_env):
    """The quick start's folder, then a run on another dataset: refused by the check, in one line,
    before anything of the old run is touched (it used to continue the old model silently)."""
    other = tmp_path / "other"
    shutil.copytree(image_folder, other)  # same classes, another data root
    before = {name: (full_1p.dir / name).read_bytes() for name in RUN_FILES}
    proc = launch("train_full_1p.sh", f"--data_path={other}", *TINY, f"--device_id={full_1p.dir.name}",
                  env=subprocess_env)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("error: ") and "holds another run (data root" in line and "--fresh" in line
    assert "--device_id" in line
    assert {name: (full_1p.dir / name).read_bytes() for name in RUN_FILES} == before
