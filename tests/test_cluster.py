"""Clusters on this machine, with real processes: restarts that continue from the newest
checkpoint, SIGTERM to the launcher, two torchrun agents as two "nodes" on localhost (c10d
rendezvous on a local port), elastic membership (--nnodes 1:2), a lost node, the output-dir
lock; and the launcher's rendezvous flags and scheduler variables (no processes).

Every job is ``main_8p.py`` on the CPU (gloo), tinynet on 64 synthetic 16 px images, 1 OpenMP
thread per process; the fault injection (a worker's SIGKILL, a slow lone worker) is
tests/subprocess_hook.py's. The jobs start together when the module starts (conftest's
``start_ahead``) and run side by side.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import main_8p
from classify import launch, lock
from classify.checkpoint import load_checkpoint
from tests.conftest import ROOT, Background, free_port, read_metrics

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]  # jobs of several agents and workers
JOB = ["--dummy", "--dummy-size", "64,12", "--num-classes", "4", "--image-size", "16", "-a", "tinynet",
       "--workers", "0", "-p", "1", "--epochs", "3", "--ckpt-interval", "2", "--seed", "5"]
SCHEDULER_VARS = ("PET_NNODES", "PET_RDZV_ENDPOINT", "PET_RDZV_ID", "PET_MAX_RESTARTS", "PET_NPROC_PER_NODE",
                  "PET_RDZV_BACKEND", "PET_NODE_RANK", "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_NNODES", "SLURM_NODEID",
                  "SLURM_JOB_NODELIST", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


@pytest.fixture(scope="module")
def env(subprocess_env):
    return {k: v for k, v in subprocess_env.items() if k not in SCHEDULER_VARS}


def job(out, *flags, env, extra_env=None) -> Background:
    return Background([sys.executable, "main_8p.py", "--device", "cpu", *flags, *JOB, "--output-dir", out],
                      env=dict(env, **(extra_env or {})), cwd=ROOT)


def agents(out, *flags, env, nnodes="2", extra_env=None, second_after=None):
    """Two agents of one job, one worker each, as two nodes on localhost."""
    rdzv = ["--nnodes", nnodes, "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "t",
            "--nproc_per_node", "1", "-b", "4", *flags]
    first = job(out, *rdzv, env=env, extra_env=extra_env)
    if second_after is not None:
        second_after(first)
    return first, job(out, *rdzv, env=env, extra_env=extra_env)


records = read_metrics


def weights(out: Path):
    return load_checkpoint(out / "checkpoint.pth.tar")["state_dict"]


def assert_same_weights(a: Path, b: Path):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not (wa[k] == wb[k]).all()]
    assert not different, different


def ok(run: Background, timeout=240):
    proc = run.result(timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def stdout(run: Background) -> str:
    """A running Background's stdout so far."""
    return run._read(0)


def wait_for(run: Background, text, timeout=180):
    """Until ``text`` is in a running Background's stdout."""
    deadline = time.monotonic() + timeout
    while text not in stdout(run):
        assert run.proc.poll() is None and time.monotonic() < deadline, run._read(1)[-3000:]
        time.sleep(0.1)


START_AHEAD = ("reference_started", "restarted_started", "two_agents_started", "joined_started")  # conftest


@pytest.fixture(scope="module")
def reference_started(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    run = job(out, "--nproc_per_node", "2", "-b", "8", env=env)
    yield run, out
    run.kill()


@pytest.fixture(scope="module")
def restarted_started(env, tmp_path_factory):
    """Rank 1 SIGKILLs itself in epoch 1 step 3 (its 11th backward; 8 steps an epoch), one
    step after the mid-epoch checkpoint at step 2."""
    out = tmp_path_factory.mktemp("restarted")
    run = job(out, "--nproc_per_node", "2", "-b", "8", "--max-restarts", "1", env=env,
              extra_env={"DIST_TEST_KILL_AT": "1:11"})
    yield run, out
    run.kill()


@pytest.fixture(scope="module")
def two_agents_started(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("two_agents")
    runs = agents(out, env=env)
    yield runs, out
    for run in runs:
        run.kill()


# ---------------------------------------------------------------- restarts never lose work

def test_restart_after_sigkill_continues_from_the_newest_checkpoint(reference_started, restarted_started):
    run, out = restarted_started
    proc = ok(run)
    ref = ok(reference_started[0])
    restart_lines = [line for line in proc.stdout.splitlines() if line.startswith("=> torchrun restarted")]
    assert len(restart_lines) == 1 and "(as --resume auto)" in restart_lines[0], proc.stdout[-3000:]
    assert f"=> resumed from '{out / 'checkpoint.pth.tar'}' (epoch 1, step 2)" in proc.stdout
    assert "Epoch: [0]" not in proc.stdout.split(restart_lines[0])[1]  # never again from epoch 0
    assert [r["epoch"] for r in records(out)] == [0, 1, 2]
    assert_same_weights(out, reference_started[1])  # bit-identical to the uninterrupted run
    assert [r["acc1"] for r in records(out)] == [r["acc1"] for r in records(reference_started[1])]
    tracebacks = [line for line in proc.stderr.splitlines() if "Traceback" in line]
    assert not tracebacks, proc.stderr[-3000:]  # the survivor's lost peer is one line
    assert not (out / lock.LOCK_NAME).exists() and "Epoch: [2]" in ref.stdout


@pytest.fixture
def sigterm_started(env, tmp_path):
    out = tmp_path
    run = job(out, "--nproc_per_node", "2", "-b", "8", "--resume", "auto", env=env,
              extra_env={"DIST_TEST_SLOW": "0.3"})  # paced, so that the stop lands in epoch 0
    yield run, out
    run.kill()


def test_sigterm_to_the_launcher_stops_every_worker_and_resubmitting_continues(sigterm_started, env):
    run, out = sigterm_started
    wait_for(run, "Epoch: [0][3/8]")
    os.kill(run.proc.pid, signal.SIGTERM)  # the launcher only, as Slurm's --signal=TERM@N
    proc = run.result(120)
    assert proc.returncode == 143, proc.stderr[-3000:]
    stopped = [line for line in proc.stderr.splitlines() if line.startswith("=> stopped by SIGTERM")]
    assert len(stopped) == 1, proc.stderr[-3000:]  # rank 0 saved, every rank stopped at that step
    step = load_checkpoint(out / "checkpoint.pth.tar")["step"]
    assert f"at epoch 0 step {step};" in stopped[0] and step >= 3
    again = ok(job(out, "--nproc_per_node", "2", "-b", "8", "--resume", "auto", env=env))  # the same command
    assert f"=> resumed from '{out / 'checkpoint.pth.tar'}' (epoch 0, step {step})" in again.stdout
    assert [r["epoch"] for r in records(out)] == [0, 1, 2]


# ---------------------------------------------------------------- two nodes for real

def test_two_agents_train_like_one_node_with_two_processes(two_agents_started, reference_started):
    (first, second), out = two_agents_started
    procs = [ok(first), ok(second)]
    ref = ok(reference_started[0])
    assert sum("on cpu x2" in p.stdout for p in procs) == 1  # one rank 0, on one of the nodes
    assert_same_weights(out, reference_started[1])
    acc = [r["acc1"] for r in records(out)]
    assert acc == [r["acc1"] for r in records(reference_started[1])] and ref.returncode == 0


@pytest.fixture(scope="module")
def joined_started(env, tmp_path_factory):
    """--nnodes 1:2: the first agent trains alone (slowly), the second joins while it does."""
    out = tmp_path_factory.mktemp("joined")
    runs = agents(out, "--rdzv-conf", "last_call_timeout=1", env=env, nnodes="1:2",
                  extra_env={"DIST_TEST_SLOW_ALONE": "0.5"}, second_after=lambda first: wait_for(first, "on cpu x1"))
    yield runs, out
    for run in runs:
        run.kill()


def test_a_node_that_joins_restarts_the_job_from_its_checkpoint(joined_started):
    (first, second), out = joined_started
    procs = [ok(first), ok(second)]
    text = "".join(p.stdout for p in procs)
    assert "on cpu x1" in text and "on cpu x2" in text  # trained alone, then both ranks
    assert "=> torchrun restarted the workers" in text
    assert [r["epoch"] for r in records(out)] == [0, 1, 2]  # no epoch lost, none twice
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs"] == 3


def test_a_lost_agent_does_not_leave_the_other_hanging(env, tmp_path):
    """The second agent dies (SIGKILL); its worker learns it (PR_SET_PDEATHSIG) and the ranks
    stop together, so the first agent's job ends, non-zero, instead of training on with an
    unsupervised peer or waiting on a dead one."""
    first, second = agents(tmp_path, env=env, extra_env={"DIST_TEST_SLOW": "0.2"})  # ~30 s of steps
    deadline = time.monotonic() + 180
    while not any("Epoch: [0]" in stdout(r) for r in (first, second)):  # training: both nodes are in
        assert time.monotonic() < deadline and first.proc.poll() is None and second.proc.poll() is None
        time.sleep(0.1)
    os.kill(second.proc.pid, signal.SIGKILL)  # the agent alone (its worker runs in a session of its own)
    killed = time.monotonic()
    proc = first.result(90)
    assert proc.returncode != 0 and time.monotonic() - killed < 90
    # Which one-line error the survivor ends with depends on which it notices first: its worker's
    # failed collective, or the rendezvous store of the dead node going away.
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(("error: worker rank", "error: rendezvous at")), proc.stderr[-3000:]
    assert second.result(5).returncode == -signal.SIGKILL


# ---------------------------------------------------------------- the output-dir lock

def test_second_job_on_the_same_output_dir_fails_at_once(env, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / lock.LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid,
                                                      "start": 1.7e9, "job": "other"}) + "\n")
        before = sorted(p.name for p in out.iterdir())
        proc = subprocess.run([sys.executable, "main_8p.py", "--device", "cpu", *JOB, "--output-dir", out],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1.7e9))
        assert proc.returncode != 0 and proc.stderr == (
            f"error: output dir '{out}' is in use by job {holder.pid} on {socket.gethostname()} since {since}; "
            "pass another --output-dir or stop that job\n")
        assert proc.stdout == "" and sorted(p.name for p in out.iterdir()) == before
    finally:
        holder.kill()
        holder.wait()


def test_lock_stale_other_host_and_own_job(tmp_path, monkeypatch, capsys):
    path = tmp_path / lock.LOCK_NAME
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def held_by(**fields):
        path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start": 1.7e9, "job": None,
                                    **fields}))

    held_by(pid=dead.pid)  # a dead process on this host: taken over with a notice
    taken = lock.acquire(tmp_path, notice=print)
    assert "taking over the stale lock of job" in capsys.readouterr().out and not taken.restarted
    assert json.loads(path.read_text())["pid"] == os.getpid()
    taken.release()
    assert not path.exists()
    held_by(host="elsewhere", pid=dead.pid)  # another host: respected, unless forced
    with pytest.raises(lock.UserError, match="is in use by job .* on elsewhere"):
        lock.acquire(tmp_path, notice=print)
    assert json.loads(path.read_text())["host"] == "elsewhere"
    forced = lock.acquire(tmp_path, force=True, notice=print)
    assert "--force-output-dir: taking over" in capsys.readouterr().out and not forced.restarted
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job7")  # a restart generation of the same job: no trip
    held_by(host="elsewhere", pid=12345, job="job7")
    again = lock.acquire(tmp_path, notice=print)
    assert again.restarted and capsys.readouterr().out == ""
    lock.check_free(tmp_path, job="job7")  # the launcher of that job, too
    with pytest.raises(lock.UserError):
        lock.check_free(tmp_path, job="job8")


# ---------------------------------------------------------------- rendezvous flags (no processes)

@pytest.fixture
def clean_env(monkeypatch):
    for name in SCHEDULER_VARS:
        monkeypatch.delenv(name, raising=False)


def torchrun_flags(*argv, env=None):
    return launch.plan(["--device", "cpu", *argv], env=env or {}).torchrun


def test_rendezvous_flags_pass_through(clean_env):
    flags = torchrun_flags("--nnodes", "1:4", "--rdzv-endpoint", "node0:29400", "--rdzv-id", "job42",
                           "--max-restarts", "3", "--rdzv-timeout", "120")
    assert flags == ["--nproc_per_node=2", "--max-restarts=3", "--nnodes=1:4", "--rdzv-backend=c10d",
                     "--rdzv-endpoint=node0:29400", "--rdzv-id=job42",
                     "--rdzv-conf=join_timeout=120,read_timeout=120,timeout=120"]
    static = torchrun_flags("--nnodes", "2", "--node-rank", "1", "--rdzv-backend", "static",
                            "--rdzv-endpoint", "node0:29400")
    assert "--rdzv-backend=static" in static and "--node-rank=1" in static
    assert f"timeout={launch.RDZV_TIMEOUT}" in torchrun_flags("--nnodes", "2", "--rdzv-endpoint", "h:1")[-1]
    one = torchrun_flags()  # one node: a free local port, a fresh job id
    assert "--rdzv-endpoint=localhost:0" in one and "--nnodes=1" in one


def test_modelzoo_and_pytorch_examples_forms_map_onto_the_agent(clean_env):
    flags = torchrun_flags("--world-size", "2", "--rank", "1", "--dist-url", "tcp://10.1.2.3:50000")
    assert "--nnodes=2" in flags and "--rdzv-endpoint=10.1.2.3:50000" in flags
    assert "--rdzv-id=classify-10.1.2.3-50000" in flags  # the same on every node
    assert "--rdzv-endpoint=h0:29500" in torchrun_flags("--world-size", "2", "--rank", "0", "--addr", "h0")
    env = {"MASTER_ADDR": "node0", "MASTER_PORT": "1234"}
    assert "--rdzv-endpoint=node0:1234" in torchrun_flags("--world-size", "4", "--rank", "3",
                                                          "--dist-url", "env://", env=env)
    single = torchrun_flags("--world-size=1", "--rank=0", "--dist-url=tcp://127.0.0.1:50000")
    assert "--rdzv-endpoint=localhost:0" in single  # two such jobs on one machine do not collide


def test_scheduler_environment_when_no_flag(clean_env):
    pet = {"PET_NNODES": "2:3", "PET_RDZV_ENDPOINT": "job-worker-0:23456", "PET_RDZV_ID": "pj",
           "PET_MAX_RESTARTS": "5", "PET_NPROC_PER_NODE": "3"}
    assert torchrun_flags(env=pet)[:6] == ["--nproc_per_node=3", "--max-restarts=5", "--nnodes=2:3",
                                           "--rdzv-backend=c10d", "--rdzv-endpoint=job-worker-0:23456",
                                           "--rdzv-id=pj"]
    slurm = {"SLURM_JOB_ID": "881", "SLURM_NNODES": "2", "SLURM_NODEID": "1",
             "SLURM_JOB_NODELIST": "gpu[007-008,010],cpu1"}
    p = launch.plan(["--device", "cpu"], env=slurm)
    assert p.nnodes == 2 and p.node_rank == 1
    assert "--rdzv-endpoint=gpu007:29500" in p.torchrun and "--rdzv-id=881" in p.torchrun
    assert "--nnodes=3" in torchrun_flags("--nnodes", "3", "--rdzv-endpoint", "x:1", env=slurm)  # flags win
    assert "--rdzv-id=881.2" in torchrun_flags(env=dict(slurm, SLURM_STEP_ID="2"))  # one srun step, all nodes
    assert launch.first_host("n1,n2") == "n1" and launch.first_host("a[1-2]") == "a1"


@pytest.mark.parametrize("flags, message", [
    (["--nnodes", "2"], "2 nodes need the address of node 0: pass --rdzv-endpoint HOST:PORT"),
    (["--nnodes", "2:1", "--rdzv-endpoint", "h:1"], "--nnodes 2:1: the minimum is above the maximum"),
    (["--nnodes", "two"], "is not a number of nodes N or a range MIN:MAX"),
    (["--nnodes", "2", "--rdzv-endpoint", "node0"], "--rdzv-endpoint 'node0' has no port; pass HOST:PORT"),
    (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "--node-rank 2 is not a node rank"),
    (["--nnodes", "1:2", "--rdzv-backend", "static", "--rdzv-endpoint", "h:1"], "needs --rdzv-backend c10d"),
    (["--nnodes", "2", "--rdzv-backend", "static", "--rdzv-endpoint", "h:1", "--max-restarts", "1"],
     "--max-restarts needs --rdzv-backend c10d"),
    (["--rdzv-backend", "etcd"], "is not c10d or static"),
    (["--nnodes", "2", "--world-size", "3", "--rdzv-endpoint", "h:1"], "disagree"),
    (["--rdzv-timeout", "0"], "--rdzv-timeout must be >= 1"),
])
def test_bad_combinations_are_one_line_before_any_process(flags, message, clean_env, capsys, monkeypatch):
    monkeypatch.setattr(launch, "_run_torchrun", lambda *a: pytest.fail("workers started"))
    code = main_8p.run(["--device", "cpu", "--dummy", "-a", "tinynet", *flags])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_unreachable_endpoint_fails_within_the_rendezvous_timeout(env, tmp_path):
    """192.0.2.1 (TEST-NET-1, RFC 5737): never answers; the agent is never started."""
    start = time.monotonic()
    proc = job(tmp_path, "--nnodes", "2", "--rdzv-endpoint", "192.0.2.1:29400", "--rdzv-timeout", "3",
               env=env).result(120)
    assert proc.returncode == 2 and time.monotonic() - start < 60
    assert proc.stderr.startswith("error: rendezvous endpoint 192.0.2.1:29400 did not answer from ")
    assert proc.stderr.count("\n") == 1 and "within --rdzv-timeout 3 s" in proc.stderr, proc.stderr
