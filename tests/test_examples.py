"""The cluster files in examples/: the Slurm batch script against a real Slurm on this
machine (tools/slurm_local.sh: munged, slurmctld and two slurmd nodes on 127.0.0.1), and the
Kubeflow PyTorchJob manifest, parsed and checked against docs/distributed.md and the launcher.

The Slurm test is skipped, with the reason, when the daemons cannot start here (packages:
slurmctld slurmd slurm-client munge). ``.ci/run`` starts them once and passes
``CLASSIFY_TEST_SLURM_CONF``; otherwise this module starts and stops its own.
"""

import os
import re
import shutil
import subprocess

import pytest

from classify import launch
from tests.conftest import ROOT, free_port, write_image_folder

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]  # a local Slurm, two nodes
SBATCH = ROOT / "examples" / "slurm" / "train.sbatch"
MANIFEST = ROOT / "examples" / "kubernetes" / "pytorchjob.yaml"
ACC = re.compile(r"^ \* Acc@1 ([\d.]+) Acc@5 [\d.]+$", re.M)
FPS = re.compile(r"^\[epoch \d+\] FPS@all ([\d.]+)$", re.M)


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory):
    given = os.environ.get("CLASSIFY_TEST_SLURM_CONF")
    if given:
        yield given
        return
    if shutil.which("sbatch") is None:
        pytest.skip("Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge)")
    folder = tmp_path_factory.mktemp("slurm")
    script = str(ROOT / "tools" / "slurm_local.sh")
    proc = subprocess.run(["bash", script, "start", folder], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"local Slurm daemons cannot start: {proc.stderr.strip().splitlines()[-1:]}")
    try:
        yield proc.stdout.strip().split("=", 1)[1]
    finally:
        subprocess.run(["bash", script, "stop", folder], timeout=60)


@pytest.mark.slow  # the slow tier (-m slow): a two-node job on the local Slurm
def test_slurm_example_trains_on_two_nodes(slurm_conf, subprocess_env, tmp_path):
    """The example itself, submitted with the CPU overrides its comments name (no GPUs,
    DEVICE=cpu, one worker per node): two nodes, two ranks, the closing numbers in its log."""
    data = write_image_folder(tmp_path / "data", train_per_class=4, val_per_class=3, size=32)
    env = dict(subprocess_env, SLURM_CONF=slurm_conf, DATA=str(data), ARCH="tinynet", DEVICE="cpu", NPROC="1",
               OUTPUT=str(tmp_path / "out"), PORT=str(free_port()), PYTHON=os.sys.executable,
               EXTRA="--epochs 2 -b 4 --workers 0 --image-size 32 -p 1")
    for name in [k for k in env if k.startswith(("SLURM_", "PET_")) and k != "SLURM_CONF"]:
        del env[name]
    log = tmp_path / "job.out"
    proc = subprocess.run(["sbatch", "--wait", "--gpus-per-node=0", "--cpus-per-task=1", "--time=5",
                           f"--output={log}", f"--chdir={ROOT}", str(SBATCH)],
                          env=env, capture_output=True, text=True, timeout=300)
    text = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, proc.stdout + proc.stderr + text[-3000:]
    assert "on cpu x2," in text  # one rank per node, one job
    acc, fps = ACC.findall(text), FPS.findall(text)
    assert len(acc) == 2 and 0 <= float(acc[-1]) <= 100 and len(fps) == 2 and float(fps[-1]) > 0, text[-3000:]
    assert [p.name for p in (tmp_path / "out").glob("checkpoint.pth.tar")] == ["checkpoint.pth.tar"]
    assert not (tmp_path / "out" / ".classify.lock").exists()


def manifest():
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(MANIFEST.read_text())


def test_kubernetes_manifest_is_an_elastic_pytorchjob_with_the_documented_command():
    job = manifest()
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    policy = job["spec"]["elasticPolicy"]
    assert policy["rdzvBackend"] == "c10d" and 1 <= policy["minReplicas"] <= policy["maxReplicas"]
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert list(specs) == ["Worker"]  # elastic: workers only, no Master
    worker = specs["Worker"]
    assert policy["minReplicas"] <= worker["replicas"] <= policy["maxReplicas"]
    assert worker["restartPolicy"] == "OnFailure"
    (container,) = worker["template"]["spec"]["containers"]
    command = container["command"]
    page = (ROOT / "docs" / "distributed.md").read_text()
    assert f"    {' '.join(command)}\n" in page  # the command docs/distributed.md documents
    assert [e["name"] for e in container.get("env", [])] == ["OMP_NUM_THREADS"]  # PET_* come from the operator
    # What the operator gives each pod (elasticPolicy -> PET_*), through our launcher:
    name = job["metadata"]["name"]
    pet = {"PET_NNODES": f"{policy['minReplicas']}:{policy['maxReplicas']}", "PET_RDZV_BACKEND": "c10d",
           "PET_RDZV_ENDPOINT": f"{name}-worker-0:23456", "PET_RDZV_ID": name,
           "PET_MAX_RESTARTS": str(policy["maxRestarts"]), "PET_NPROC_PER_NODE": str(policy["nProcPerNode"])}
    argv = [a if a != "cuda" else "cpu" for a in command[2:]]  # no GPU here: the same flags on cpu
    p = launch.plan(argv, env=pet)
    assert p.torchrun[:6] == [f"--nproc_per_node={policy['nProcPerNode']}", f"--max-restarts={policy['maxRestarts']}",
                              f"--nnodes={pet['PET_NNODES']}", "--rdzv-backend=c10d",
                              f"--rdzv-endpoint={name}-worker-0:23456", f"--rdzv-id={name}"]
    assert "--resume" in p.worker_args and "auto" in p.worker_args


def test_slurm_example_command_resolves_with_the_slurm_environment():
    text = SBATCH.read_text()
    for directive in ("--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8", "--signal=TERM@120"):
        assert f"#SBATCH {directive}" in text
    assert "srun" in text and "main_8p.py" in text and "--rdzv-endpoint" in text and "--resume auto" in text
    slurm = {"SLURM_JOB_ID": "77", "SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "n[1-2]"}
    p = launch.plan(["--device", "cpu", "--nproc_per_node", "8", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                     "n1:29500", "--max-restarts", "3"], env=slurm)
    assert "--nnodes=2" in p.torchrun and "--rdzv-id=77" in p.torchrun and p.world_size == 16
