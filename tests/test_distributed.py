"""Distributed training and evaluation on CPU (gloo processes), with tiny test nets.

The multi-process tests start real jobs the ways users do: ``main_8p.py`` (pytorch/examples
and MindSpore flags), ``main.py --multiprocessing-distributed`` and torchrun itself.
main_8p.py starts its workers as ``main.py``, which knows nothing of the test-only nets,
so every process of a job runs tests/subprocess_hook.py through a ``sitecustomize.py`` on
PYTHONPATH (conftest's ``subprocess_env``; the hook also injects a failure into one rank
when asked). The jobs that need nothing from the tests before them start together when the
module starts (conftest's ``start_ahead``) and run beside the others.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import main
import models
from classify.checkpoint import load_checkpoint
from tests import tinynet
from tests.conftest import Background, read_metrics, read_summary, train_in_process

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]  # gloo jobs: main_8p.py, torchrun
ROOT = Path(__file__).resolve().parent.parent
FLAT = tinynet.FLAT  # no BatchNorm, no dropout: see tinynet.build_flat
VAL_IMAGES = 22  # not a multiple of 3 (nor of the 6-image batch)
HEADER = re.compile(r"^=> \S+ \(\S+\) on (\S+) x(\d+),")
STEP = re.compile(r"^Epoch: \[\d+\]\[ *\d+/\d+\]  Time ([\d.]+) ")
ACC = re.compile(r"^ \* Acc@1 ([\d.]+) Acc@5 [\d.]+$")
FPS = re.compile(r"^\[epoch \d+\] FPS@all ([\d.]+)$")


@pytest.fixture(scope="module", autouse=True)
def _flat_registered():
    tinynet.register_flat()
    yield
    models.unregister_model(FLAT)


START_AHEAD = ("flat_2p_started", "two_proc_started", "failing_rank_started")  # conftest's _start_ahead


@pytest.fixture(scope="module")
def hook_env(subprocess_env):
    """Environment for a job: the test nets in every process, one OpenMP thread per process."""
    return subprocess_env


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The 3-colour tree, 36 train images; val 3 x 7 plus one green image filed under red:
    22 images, and an Acc@1 below 100 that one duplicated or dropped image would move."""
    from tests.conftest import write_image_folder

    root = write_image_folder(tmp_path_factory.mktemp("dist_data"))
    shutil.copy(root / "val" / "green" / "000.jpg", root / "val" / "red" / "900.jpg")
    return root


def start_job(args, env) -> Background:
    """``python ARGS`` from the repo root, started, in its own process group: on a timeout the
    whole job (launcher and workers) is killed, not only the launcher."""
    return Background([sys.executable, *args], env=env, cwd=ROOT)


def job(args, env, timeout=240) -> subprocess.CompletedProcess:
    """``start_job`` and wait for it."""
    return start_job(args, env).result(timeout)


in_process = train_in_process


def matching(pattern, text):
    return [m for m in map(pattern.match, text.splitlines()) if m]


records, summary = read_metrics, read_summary


def tiny(data, out, *extra, batch=8):
    return [data, "-a", "tinynet", "-b", batch, "--workers", "0", "-p", "1", "--output-dir", out, *extra]


# ---------------------------------------------------------------- exact evaluation

@pytest.mark.slow
def test_three_process_evaluation_counts_every_image_once(data, hook_env, tmp_path, capsys):
    in_process(capsys, *tiny(data, tmp_path / "train", "--epochs", "1"))
    ckpt = tmp_path / "train" / "checkpoint.pth.tar"
    flags = ["-a", "tinynet", "-b", "6", "--workers", "0", "-e", "--resume", ckpt]
    one = matching(ACC, in_process(capsys, data, *flags, "--output-dir", tmp_path / "e1"))
    assert len(one) == 1 and 0 < float(one[0].group(1)) < 100, one  # else duplicates could not show
    # 22 images over 3 ranks: 8 + 7 + 7, and ragged last batches of 2/device
    proc = job(["main_8p.py", "--device", "cpu", "--nproc_per_node", "3", data, *flags,
                "--output-dir", tmp_path / "e3"], hook_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [m.groups() for m in matching(HEADER, proc.stdout)] == [("cpu", "3")]
    three = matching(ACC, proc.stdout)
    assert [m.group(0) for m in three] == [one[0].group(0)]  # the same line, to the last digit
    for out, world in (("e1", 1), ("e3", 3)):
        s = summary(tmp_path / out)
        assert (s["val_images"], s["world_size"]) == (VAL_IMAGES, world)
    assert summary(tmp_path / "e3")["final_acc1"] == summary(tmp_path / "e1")["final_acc1"]
    # the confusion matrix too: counted per rank on the device, reduced once (eval/confusion.csv)
    tables = [(tmp_path / out / "eval" / "confusion.csv").read_text() for out in ("e1", "e3")]
    assert tables[0] == tables[1]
    assert sum(int(v) for row in tables[0].splitlines()[1:] for v in row.split(",")[1:]) == VAL_IMAGES


# ---------------------------------------------------------------- 2 processes == 1 process

def flat_flags(data):
    return [data, "-a", FLAT, "-b", "8", "--lr", "0.1", "--workers", "0", "-p", "100", "--epochs", "3"]


@pytest.fixture(scope="module")
def flat_2p_started(data, hook_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("p2")
    run = start_job(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "tests/run_main.py",
                     *flat_flags(data), "--device", "cpu", "--output-dir", out], hook_env)
    yield run, out
    run.kill()


def test_two_processes_train_like_one_on_the_same_global_batch(data, flat_2p_started, tmp_path, capsys):
    """torchrun itself (multi-node runs the same code with --nnodes): -b 8 is 4 per process.
    The global batches and their augmentations are the same; with averaged gradients the
    weights agree to float rounding (~1e-7). Summed gradients (2x the step) end ~0.3 away,
    ranks that skip the all-reduce ~0.04, both far outside the tolerance."""
    in_process(capsys, *flat_flags(data), "--output-dir", tmp_path / "p1")
    run, p2 = flat_2p_started
    proc = run.result(240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [m.groups() for m in matching(HEADER, proc.stdout)] == [("cpu", "2")]
    assert "batch 8 (4/device)" in proc.stdout
    one, two = records(tmp_path / "p1"), records(p2)
    assert [r["train_images"] for r in two] == [r["train_images"] for r in one] == [32] * 3
    for key in ("train_loss", "val_loss"):
        assert [r[key] for r in two] == pytest.approx([r[key] for r in one], abs=1e-3), key
    a = load_checkpoint(tmp_path / "p1" / "checkpoint.pth.tar")["state_dict"]
    b = load_checkpoint(p2 / "checkpoint.pth.tar")["state_dict"]
    moved = sum(float((a[k] - b[k]).norm()) ** 2 for k in a) ** 0.5
    size = sum(float(a[k].norm()) ** 2 for k in a) ** 0.5
    assert moved / size < 1e-4, moved / size


# ---------------------------------------------------------------- rank 0 alone writes and prints

@pytest.fixture(scope="module")
def two_proc_started(data, hook_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("two_proc")
    run = start_job(["tests/run_main.py", "--multiprocessing-distributed", "--device", "cpu",
                     *tiny(data, out, "--epochs", "2", batch=4)], hook_env)
    yield run, out
    run.kill()


@pytest.fixture(scope="module")
def two_proc_run(two_proc_started):
    """main.py --multiprocessing-distributed (pytorch/examples style), 2 gloo workers, 2 epochs
    of 9 steps (2 images per worker: enough steps for a steady FPS window)."""
    run, out = two_proc_started
    return run.result(240), out


def test_multiprocessing_distributed_flag_starts_one_worker_per_device(two_proc_run):
    proc, out = two_proc_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [m.groups() for m in matching(HEADER, proc.stdout)] == [("cpu", "2")]
    assert "batch 4 (2/device)" in proc.stdout and summary(out)["world_size"] == 2


def test_rank_zero_alone_writes_and_prints(two_proc_run, data, tmp_path, capsys):
    proc, out = two_proc_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    in_process(capsys, *tiny(data, tmp_path, "--epochs", "2", batch=4))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in tmp_path.iterdir())  # = 1 process
    assert [(r["epoch"], r["train_images"]) for r in records(out)] == [(0, 36), (1, 36)]  # global counts
    s = summary(out)
    assert (s["epochs"], s["val_images"]) == (2, VAL_IMAGES)
    lines = proc.stdout
    assert len(matching(HEADER, lines)) == 1
    steps = matching(STEP, lines)
    assert len(steps) == 2 * 9  # -p 1: every step once (36 images: 9 steps of 2 x 2 per epoch)
    assert len(matching(ACC, lines)) == 2 and "[rank1]" not in lines
    fps = [float(m.group(1)) for m in matching(FPS, lines)]
    assert len(fps) == 2 and s["fps"] == fps[-1] > 0
    # Global FPS: 4 images per step over the step time; rank 0's 2 images would be half of it.
    step_time = sum(float(m.group(1)) for m in steps[10:]) / 8  # epoch 1 after its warm-up step
    assert 0.6 < fps[-1] * step_time / 4 < 1.5, (fps[-1], step_time)  # stalls only lower it


def test_evaluation_during_training_matches_the_saved_checkpoints(two_proc_run, data, tmp_path, capsys,
                                                                monkeypatch):
    """Each rank's last forward updates its own BatchNorm running statistics; the per-epoch
    evaluation must use the statistics the checkpoints hold (rank 0's), or the reported val
    loss / Acc@1 and the model_best choice belong to no saved model. Both checkpoints are
    checked: how far the ranks' statistics drift apart depends on their last batches."""
    import classify.run

    proc, out = two_proc_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = []
    evaluate = classify.run.evaluate
    monkeypatch.setattr(classify.run, "evaluate", lambda *a, **k: seen.append(evaluate(*a, **k)) or seen[-1])
    logged = records(out)
    for name in ("model_best.pth.tar", "checkpoint.pth.tar"):
        in_process(capsys, data, "-a", "tinynet", "-b", "8", "--workers", "0", "-e", "--resume", out / name,
                   "--output-dir", tmp_path)
        epoch = load_checkpoint(out / name)["epoch"] - 1
        assert (seen[-1]["loss"], seen[-1]["acc1"]) == pytest.approx(
            (logged[epoch]["val_loss"], logged[epoch]["acc1"]), abs=2e-4), (name, epoch)


# ---------------------------------------------------------------- a worker dies

LONG_RUN = ["--dummy", "--dummy-size", "1000000,8", "--num-classes", "4", "--image-size", "16", "-a", "tinynet",
            "--workers", "0", "-p", "1", "--epochs", "1"]


def _children(pid: int):
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            yield int(stat.parent.name)


def _worker_pid(launcher: int, rank: int) -> int:
    for child in _children(launcher):
        try:
            env = (Path("/proc") / str(child) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return child
    raise AssertionError(f"no worker with RANK={rank} under pid {launcher}")


def test_killed_worker_stops_the_job_and_is_named(hook_env, tmp_path):
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as so, open(err, "w") as se:
        proc = subprocess.Popen([sys.executable, "main_8p.py", "--device", "cpu", "--nproc_per_node", "2",
                                 "-b", "8", *LONG_RUN, "--output-dir", tmp_path / "run"],
                                stdout=so, stderr=se, env=hook_env, cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "Epoch: [0]" not in out.read_text():  # training: the process group is up
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.1)
        os.kill(_worker_pid(proc.pid, rank=1), signal.SIGKILL)
        killed = time.monotonic()
        code = proc.wait(timeout=60)
        assert time.monotonic() - killed < 60
    finally:
        if proc.poll() is None:  # never leave a job behind (it would train a million images)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    errors = [line for line in err.read_text().splitlines() if line.startswith("error: worker rank")]
    assert code != 0 and len(errors) == 1, err.read_text()[-3000:]
    assert errors[0].startswith("error: worker rank 1 failed (signal SIGKILL)"), errors


@pytest.fixture(scope="module")
def failing_rank_started(hook_env, tmp_path_factory):
    run = start_job(["main_8p.py", "--nproc_per_node=2", "--visible_devices=0,1", "main.py", "--per_batch_size=4",
                     "--device", "cpu", *LONG_RUN, "--output-dir", tmp_path_factory.mktemp("failing_rank")],
                    dict(hook_env, DIST_TEST_FAIL_RANK="1"))
    yield run
    run.kill()


def test_worker_exception_stops_the_job_mindspore_style(failing_rank_started):
    """The seed GoogLeNet-for-MindSpore launch line; rank 1 raises in its third step, rank 0
    is then blocked in the gradient all-reduce and must not hang (the job would otherwise
    train a million images)."""
    proc = failing_rank_started.result(180)
    assert [m.groups() for m in matching(HEADER, proc.stdout)] == [("cpu", "2")]
    assert "batch 8 (4/device)" in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: worker rank")]
    assert proc.returncode != 0 and "RuntimeError: injected failure" in proc.stderr
    assert len(errors) == 1 and errors[0].startswith("error: worker rank 1 failed (exit code 1)"), errors


# ---------------------------------------------------------------- launcher flags (no processes)

@pytest.fixture
def torchrun_argv(monkeypatch):
    """launch() with torchrun replaced by a recorder: the argv it would have run."""
    import classify.launch

    calls = []
    monkeypatch.setattr(classify.launch, "_run_torchrun", lambda argv, rdzv=None: calls.append(argv) or 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def _launch(*argv):
        assert classify.launch.launch(list(argv)) == 0
        return calls.pop()

    return _launch


def test_launcher_maps_node_flags_onto_torchrun(torchrun_argv, monkeypatch):
    # pytorch/examples multi-node: --world-size nodes, --rank this node, node 0's address; the
    # c10d rendezvous of torchrun's agent (tests/test_cluster.py has the rendezvous flags)
    for name in ("MASTER_ADDR", "MASTER_PORT", "SLURM_JOB_ID", "PET_RDZV_ID", "PET_NNODES", "SLURM_NNODES"):
        monkeypatch.delenv(name, raising=False)
    argv = torchrun_argv("--device", "cpu", "--multiprocessing-distributed", "--world-size", "2", "--rank", "1",
                         "--addr", "10.1.2.3", "--dist-url", "tcp://10.1.2.3:50000", "/data", "-b", "8")
    i = argv.index(str(Path(main.__file__).resolve()))
    assert argv[:i] == ["--nproc_per_node=2", "--max-restarts=0", "--nnodes=2", "--rdzv-backend=c10d",
                        "--rdzv-endpoint=10.1.2.3:50000", "--rdzv-id=classify-10.1.2.3-50000",
                        "--rdzv-conf=join_timeout=300,read_timeout=300,timeout=300"]
    assert argv[i + 1:] == ["--device=cpu", "--multiprocessing-distributed", "/data", "-b", "8"]
    # One node: a free port, whatever --dist-url says (two jobs on one machine must not collide)
    argv = torchrun_argv("--device", "cpu", "--world-size=1", "--rank=0", "--dist-url=tcp://127.0.0.1:50000",
                         "--nproc_per_node=3", "--visible_devices=0,1,2", "main.py", "--per_batch_size=4")
    assert "--rdzv-endpoint=localhost:0" in argv and "--nproc_per_node=3" in argv and "main.py" not in argv
    monkeypatch.setenv("MASTER_ADDR", "node0")
    monkeypatch.setenv("MASTER_PORT", "1234")
    argv = torchrun_argv("--device", "cpu", "--world-size", "4", "--rank", "3", "--dist-url", "env://")
    assert "--rdzv-endpoint=node0:1234" in argv and "--nnodes=4" in argv


@pytest.mark.parametrize("flags, message", [
    (["--world-size", "2", "--rank", "1"], "need the address of node 0"),
    (["--world-size", "2", "--rank", "2", "--addr", "h"], "--rank 2 is not a node rank"),
    (["--nproc_per_node", "3", "--device-list", "0,1"], "one worker per listed device"),
    (["--dist-url", "file:///tmp/x"], "is not tcp://HOST:PORT"),
    (["-b", "7"], "--batch-size 7 does not divide over 2 devices"),
])
def test_launcher_rejects_bad_flags_before_starting_workers(flags, message, data, capsys, monkeypatch):
    import classify.launch
    import main_8p

    monkeypatch.setattr(classify.launch, "_run_torchrun", lambda *a: pytest.fail("workers started"))
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    code = main_8p.run(["--device", "cpu", str(data), "-a", "tinynet", *flags])  # cpu: 2 workers by default
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_first_failure_is_the_killed_worker_not_its_peer(tmp_path):
    """Both failures caught in one poll (same timestamp, rank 0 listed first): the peer's
    'connection closed' exit is a consequence of rank 1's SIGKILL."""
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from classify.launch import first_failure

    def failure(rank, code):
        f = ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=code, error_file=str(tmp_path / "none"))
        f.timestamp = 1000
        return f

    assert first_failure({0: failure(0, 1), 1: failure(1, -9)})[0] == 1
    assert first_failure({0: failure(0, -15), 1: failure(1, 1)})[0] == 1
    assert first_failure({0: failure(0, 143), 1: failure(1, 1)})[0] == 1  # SIGTERM handled by the worker
    assert first_failure({1: failure(1, 1), 0: failure(0, 1)})[0] == 1  # torchelastic's order otherwise
