"""The per-model folders (models/<net>/main.py, main_8p.py, test/*.sh), the seeds' flags, and the
seeds' own log pipelines run verbatim on logs that the folders' scripts wrote.

The launcher runs use the real networks (the folder fixes the arch) at their smallest inputs on
the tiny 3-class tree, started together at module start (conftest's ``start_ahead``).
"""

import ast
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from itertools import count

import pytest

import models
from classify.cli import SEED_NO_OPS
from classify.resolve import build_config
from classify.launch import launcher_parser
from main import get_args_parser
from tests.conftest import ROOT, Background, launcher_env, launcher_output, tiny_args, train_in_process, write_image_folder
from tests.tinynet import RECIPE as TINY_RECIPE
from tools import new_model

pytestmark = pytest.mark.timeout(600)  # the tests that wait on real runs of the networks
NETS = [n for n in models.list_models() if (ROOT / "models" / n).is_dir()]  # the networks with a folder
SCRIPTS = new_model.SCRIPTS


def network(net):
    """The seed network name of ``net``'s folder scripts (Network, the start of CaseName)."""
    return models.get_model_entry(net).network


# ----------------------------------------------------------------------------- §1 the folders


def _logic_lines(path):
    """Lines that do something: no blank lines, comments, docstrings or shebang."""
    text = path.read_text()
    if path.suffix == ".py":
        tree = ast.parse(text)
        doc = tree.body[0] if tree.body and isinstance(tree.body[0], ast.Expr) else None
        skip = set(range(doc.lineno, doc.end_lineno + 1)) if doc else set()
        return [line for i, line in enumerate(text.splitlines(), 1)
                if i not in skip and line.strip() and not line.strip().startswith("#")]
    return [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_every_network_has_a_folder_and_every_folder_a_network():
    folders = sorted(p.parent.name for p in (ROOT / "models").glob("*/__init__.py"))
    assert sorted(NETS) == folders and NETS == list(models.NETWORKS)
    log_formats = get_args_parser()._option_string_actions["--log-format"].choices
    for net in NETS:
        entry = models.get_model_entry(net)
        assert entry.name == net and entry.log_format in log_formats and entry.network
        # a folder without main_8p.py runs the top-level one for 8p: its log lines would be examples'
        assert entry.main_8p or entry.log_format == "examples", f"{net}: its log format needs main_8p=True"
        assert (ROOT / "models" / net / "README.md").is_file()


@pytest.mark.parametrize("net", NETS)
def test_every_folder_file_is_thin_and_the_same_in_every_folder(net):
    folder = ROOT / "models" / net
    assert new_model.stale(net) == []  # exactly what tools/new_model.py writes for its entry
    files, first = new_model.folder_files(net), new_model.folder_files(NETS[0])
    assert all(files[rel] == first.get(rel, files[rel]) for rel in files)  # the same text in every folder
    entries = ["main.py"] + (["main_8p.py"] if models.get_model_entry(net).main_8p else [])
    assert sorted(p.name for p in folder.glob("main*.py")) == sorted(entries)
    assert sorted(p.name for p in (folder / "test").glob("*.sh")) == sorted(SCRIPTS + ["env_npu.sh"])
    for name in entries:
        lines = _logic_lines(folder / name)
        assert len(lines) <= 9, lines  # imports, the repo on sys.path, the net from the folder, one call
        assert not re.search(r"^\s*(def|class|for|while|try)\b", "\n".join(lines), re.M)
        assert net not in (folder / name).read_text()  # the folder's name is the network
    for script in SCRIPTS:
        lines = _logic_lines(folder / "test" / script)
        mode, scale = script[len("train_"):-len(".sh")].rsplit("_", 1)
        assert lines == ['source "$(dirname "${BASH_SOURCE[0]}")/../../../test/common.sh"',
                         f'model_launcher {mode} {scale} "$@"']
        assert os.access(folder / "test" / script, os.X_OK)
    assert _logic_lines(folder / "test" / "env_npu.sh") == [
        'source "$(dirname "${BASH_SOURCE[0]}")/../../../test/env_npu.sh"']


@pytest.mark.parametrize("net", NETS)
def test_folder_main_reads_its_net_from_the_folder(net, capsys, monkeypatch, tmp_path):
    """``python models/<net>/main.py --check``: the folder's arch and its seed network name."""
    monkeypatch.setattr(sys, "argv", ["main.py", "--check", "--device=cpu", "--dummy", f"--output-dir={tmp_path}"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(ROOT / "models" / net / "main.py"), run_name="__main__")
    out = capsys.readouterr()
    assert stop.value.code == 0, out.err
    entry = models.get_model_entry(net)
    assert f"arch = {net}\nnetwork = {entry.network}\nrecipe = {entry.default_recipe}\n" in out.out


def test_new_model_writes_a_folder_from_the_entry(tmp_path, capsys):
    """tools/new_model.py: a registered net's folder files, main_8p.py only where the entry says so."""
    name = "tinyfolder"
    recipe = TINY_RECIPE.__class__(**{**TINY_RECIPE.__dict__, "name": "tinyfolder_r", "arch": name})
    models.register_model(models.ModelEntry(name=name, build=lambda **kw: None, recipes={recipe.name: recipe},
                                            default_recipe=recipe.name, main_8p=True))
    try:
        written = new_model.write(name, tmp_path)
        folder = tmp_path / "models" / name
        assert sorted(written) == sorted(f"models/{name}/{rel}" for rel in new_model.folder_files(name))
        assert (folder / "main_8p.py").is_file() and new_model.stale(name, tmp_path) == []
        (folder / "test" / "train_full_1p.sh").write_text("# edited\n")
        assert new_model.stale(name, tmp_path) == [f"models/{name}/test/train_full_1p.sh"]
        assert new_model.write(name, tmp_path) == [f"models/{name}/test/train_full_1p.sh"]
        models.unregister_model(name)
        models.register_model(models.ModelEntry(name=name, build=lambda **kw: None,
                                                recipes={recipe.name: recipe}, default_recipe=recipe.name))
        assert new_model.stale(name, tmp_path) == [f"models/{name}/main_8p.py"]  # the entry has none now
        new_model.write(name, tmp_path)
        assert not (folder / "main_8p.py").exists() and new_model.stale(name, tmp_path) == []
    finally:
        models.unregister_model(name)
    with pytest.raises(SystemExit, match=f"error: '{name}' is not a registered network; write "
                                         f"models/{name}/__init__.py first"):
        new_model.main([name])
    assert new_model.main(["--check"]) == 0  # the checkout's folders are up to date


def test_readmes_start_with_the_folder_commands_and_their_flag_tables_parse():
    options = get_args_parser()._option_string_actions
    for net in NETS:
        text = (ROOT / "models" / net / "README.md").read_text()
        first = [line.strip() for line in text.split("\n\n", 2)[1].splitlines()]
        assert first[0].startswith(f"cd models/{net} && bash test/train_full_1p.sh"), first
        assert first[1].startswith("bash test/train_full_8p.sh --data_path="), first
        table = text.split("### The seed's flags", 1)[1].split("\n\n")[2]
        flags = re.findall(r"`(-[-\w]+)", table)
        assert len(flags) >= 2 and all(flag in options for flag in flags), flags


@pytest.mark.slow  # the slow tier (-m slow): a run per network folder
def test_folder_main_is_main_with_the_arch_fixed_from_any_directory(tmp_path):
    """``python models/vgg16/main.py --check`` from elsewhere: the same resolved run as ``main.py -a vgg16``."""
    def check(*argv, cwd):
        proc = subprocess.run([sys.executable, *argv, "--check", "--device=cpu", "--dummy", "--output-dir=o"],
                              cwd=cwd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.replace(str(cwd), "CWD")

    folder = check(str(ROOT / "models" / "vgg16" / "main.py"), cwd=tmp_path)
    assert "arch = vgg16\nnetwork = Vgg16_ID1630_for_PyTorch\nrecipe = vgg16_modelzoo" in folder
    assert folder == check(str(ROOT / "main.py"), "-a", "vgg16", cwd=tmp_path)
    eight = check(str(ROOT / "models" / "googlenet" / "main_8p.py"), "--nproc_per_node=2", cwd=tmp_path)
    assert "arch = googlenet" in eight and "world_size = 2" in eight


def test_folder_script_refuses_another_arch():
    proc = subprocess.run(["bash", "models/alexnet/test/train_full_1p.sh", "--arch=vgg16"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: train_full_1p.sh: --arch=vgg16: this is alexnet's folder")


# ----------------------------------------------------------------------------- §2 the seeds' flags

# The seeds' own command lines, pasted from their test/*.sh (shell variables filled in).
SEED_COMMANDS = {
    "AlexNet_ID2663 test/train_full_8p.sh": (8, """python3 ./main.py /data/imagenet -a alexnet --addr=10.0.0.1
        --seed=49 --workers=192 --learning-rate=0.04 --mom=0.9 --weight-decay=1.0e-04 --print-freq=1
        --dist-url='tcp://127.0.0.1:41111' --dist-backend 'hccl' --multiprocessing-distributed --world-size=1
        --rank=0 --device='npu' --epochs=90 --amp --label-smoothing=0.1 --batch-size=1024"""),
    "Vgg16_ID1630 test/train_full_1p.sh": (1, """python3 ./main.py --addr=10.0.0.1 --seed=49 --workers=184
        --learning-rate=0.01 --print-freq=1 --eval-freq=1 --world-size 1 --batch-size 256 --device 'npu'
        --epochs 90 --gpu=0 --amp --opt-level 'O1' --dist-backend 'hccl' --loss-scale-value 8 --momentum 0.9
        --weight-decay 1e-4 --rank 0 --device-list 0 --data=/data/imagenet"""),
    "GoogleNet_ID1623 test/train_full_8p.sh": (8, """python3 ./main-8p.py -a googlenet --amp --data /data/imagenet
        --addr=10.0.0.1 --seed=49 --workers=128 --learning-rate=0.5 --mom=0.9 --weight-decay=1.0e-04
        --print-freq=30 --dist-url='tcp://127.0.0.1:50000' --dist-backend='hccl' --multiprocessing-distributed
        --world-size=1 --rank=0 --benchmark=0 --device='npu' --epochs=150 --batch-size=4096"""),
    "Googlenet_ID0447 test/train_full_8p.sh": (8, """python3.7 train.py --model googlenet --epochs 90
        --data-path=/data/imagenet --distributed --batch-size 4096 --workers 128 --lr 0.9 --momentum 0.9
        --weight-decay 1e-4 --apex --apex-opt-level O1 --loss_scale_value 1024 --seed 1234 --print-freq 1"""),
    "Googlenet_ID0447 test/train_performance_1p.sh": (1, """python3.7 train.py --model googlenet --epochs 1
        --data-path=/data/imagenet --batch-size=512 --lr 0.1 --momentum 0.9 --weight-decay 1e-4 --apex
        --apex-opt-level O1 --loss_scale_value 1024 --seed 1234 --device_id=0 --print-freq 1 --max_steps 100"""),
    "InceptionResNetV2_ID1779 test/train_full_8p.sh": (8, """python3 -u ./train_8p.py --data /data/imagenet --amp
        --loss-scale 128 --addr=10.0.0.1 --seed=49 --workers=192 --learning-rate=0.6 --mom=0.9
        --weight-decay=1.0e-04 --print-freq=5 --dist-url='tcp://127.0.0.1:50000' --dist-backend='hccl'
        --multiprocessing-distributed --world-size=1 --rank=0 --device='npu' --epochs=240 --label-smoothing=0.1
        --batch-size=1536"""),
    "InceptionResNetV2_ID1779 test/train_full_1p.sh": (1, """python3 train_1p.py --data /data/imagenet --npu 0 --amp
        --seed=49 --workers=192 --learning-rate=0.075 --mom=0.9 --weight-decay=1.0e-04 --print-freq=5
        --epochs=240 --label-smoothing=0.1 --batch-size=192"""),
}

# The issue's table: every flag of the seeds' entry points that main.py rejected, with a value.
SEED_FLAGS = [
    "--cache-dataset", "--dist_rank=0", "--distributed", "--lr-step-size=30", "--max_steps=100", "--sync-bn",
    "--test-only", "--npu=0", "--pm=O2", "--precision-mode=O1", "--static-loss-scale=128", "--fine-tuning",
    "--checkpoint-freq=2", "--checkpoint-nameprefix=checkpoint", "--eval-freq=5", "-ef", "5", "-bm", "0",
    "--workspace=./ws", "--warm_up_epochs=5", "--loss-scale-value=8", "--warmup=5",
    "--optimizer-batch-size=1536", "--exp_subpath=InceptionResNetV2", "-t",
]


def _resolve(argv, world):
    """The seed command's flags as main.py / main_8p.py take them (the launcher's own first)."""
    _, rest = launcher_parser().parse_known_args(argv)
    return build_config(get_args_parser().parse_args(rest), world, world)


@pytest.mark.parametrize("name", SEED_COMMANDS)
def test_seed_commands_parse(name):
    world, command = SEED_COMMANDS[name]
    words = shlex.split(command)
    script = next(i for i, w in enumerate(words) if w.endswith(".py"))  # after `python3 -u`
    argv = words[script + 1:]
    cfg = _resolve(argv, world)
    assert cfg.data.path == "/data/imagenet"


def test_each_seed_flag_parses():
    parser = get_args_parser()
    declared = {name for action in parser._actions for name in action.option_strings}
    assert [f for f in SEED_FLAGS if f.startswith("-") and f.split("=")[0] not in declared] == []
    for flag in SEED_FLAGS:
        if flag in ("5", "0"):
            continue
        argv = [flag] + (["5"] if flag == "-ef" else ["0"] if flag == "-bm" else [])
        build_config(parser.parse_args(["/d", *argv]))
    help_text = parser.format_help()
    for flag, why in SEED_NO_OPS.items():
        assert flag in help_text and "accepted, no effect" in help_text
    page = (ROOT / "docs" / "launchers.md").read_text().split("## The seeds' flags", 1)[1]
    for flag in SEED_FLAGS:
        if flag.startswith("-"):
            assert f"`{flag.split('=')[0]}" in page, flag  # docs/launchers.md's seed-flag section names it


def test_seed_flag_meanings_in_the_config():
    def flat(*argv):
        return build_config(get_args_parser().parse_args(["/d", *argv])).flat()

    assert flat("--test-only")["evaluate"] and flat("--max_steps", "7")["stop_step_num"] == 7
    assert flat("--npu", "3")["device_id"] == 3 and flat("--dist_rank", "0")["device_id"] is None
    c = flat("-a", "alexnet", "--lr-step-size", "2")  # alexnet's recipe is cosine: the step flag implies step
    assert (c["lr_scheduler"], c["lr_step"], c["lr_epochs"]) == ("step", 2, ())
    assert flat("--lr-step-size", "2", "--lr-scheduler", "cosine")["lr_scheduler"] == "cosine"
    assert flat("-ef", "3")["eval_freq"] == 3 and flat("--checkpoint-freq", "2")["checkpoint_freq"] == 2
    assert flat("--pm", "o1")["opt_level"] == "O1" and flat("--static-loss-scale", "64")["loss_scale"] == 64.0
    assert flat("--warm_up_epochs", "2")["warmup_epochs"] == 2.0 == flat("--warmup", "2")["warmup_epochs"]
    assert flat("-bm", "0")["benchmark"] is False and flat("--workspace", "w")["output_dir"] == "w"
    assert flat("--distributed") == flat()  # the launcher's: main.py --distributed starts one worker per device
    import main

    assert main._wants_launcher(get_args_parser().parse_args(["/d", "--distributed"]))


def test_eval_freq_checkpoint_freq_and_lr_step_size_in_a_run(image_folder, tmp_path, capsys):
    out = train_in_process(capsys, *tiny_args(image_folder, tmp_path, "--epochs", "3", "-ef", "2",
                                              "--checkpoint-freq", "2", "--lr-step-size", "1", "--lr-gamma", "0.1"))
    assert out.count(" * Acc@1 ") == 2  # after epoch 1 (the 2nd) and after the last
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["acc1"] is not None for r in records] == [False, True, True]
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*.pth.tar")) == ["checkpoint-1.pth.tar"]
    lr = 0.05  # tinynet's recipe at its own batch of 8
    assert [r["lr"] for r in records] == pytest.approx([lr * 0.1, lr * 0.01, lr * 0.001])


def test_max_steps_and_test_only_in_a_run(image_folder, tmp_path, capsys):
    out = train_in_process(capsys, *tiny_args(image_folder, tmp_path, "--epochs", "3", "--max_steps", "5", "-p", "1"))
    assert len(re.findall(r"^Epoch: ", out, re.M)) == 5
    assert json.loads((tmp_path / "summary.json").read_text())["epochs"] == 2  # 4 steps per epoch
    out = train_in_process(capsys, *tiny_args(image_folder, tmp_path / "e", "--test-only", "--resume",
                                              tmp_path / "checkpoint.pth.tar"))
    assert "Epoch: " not in out and re.search(r"^Test: \[3/3\]", out, re.M) and " * Acc@1 " in out


# ----------------------------------------------------------------------------- §3 the seeds' pipelines

TOP_FPS = """grep -a 'FPS' LOG | awk -F " " '{print $NF}' | awk 'END {print}'"""
TOP_ACC = """grep -a '* Acc@1' LOG | awk 'END {print}' | awk -F "Acc@1" '{print $NF}' | awk -F " " '{print $1}'"""
TOP_LOSS = """grep Epoch: LOG | grep -v Test | awk -F "Loss" '{print $NF}' | awk -F " " '{print $1}'"""
EVAL_LOSS = """grep Test LOG | awk -F "Loss" '{print $NF}' | awk -F " " '{print $1}' | awk 'END {print}'"""
TV_FPS = """grep -a 'Epoch:' LOG | grep eta: | awk -F "img/s: " '{print $NF}' | awk '{print $1}'"""
TV_FPS_PERF = """grep -a 'Epoch:' LOG|awk -F "img/s: " '{print $2}'|awk '{print $1}'|awk 'NR>2'| awk '{sum+=$1} END {print  sum/NR}'"""
TV_LOSS = """grep -a 'loss:' LOG | awk -F "loss: " '{print $NF}' | awk -F " " '{print $1}'"""
TV_ACC = """grep -a 'Acc@1' LOG | awk -F "Acc@1" '{print $NF}' | awk -F " " '{print $1}'"""
IRV2_FPS_8P = """grep 'batch_size' LOG | grep 'DEVICE' | awk -F " " '{print $NF}' | awk 'END {print}'"""
IRV2_ACC_8P = """grep -a 'Acc@1' LOG | awk -F " " '{print $8}' | awk 'END {print}'"""
IRV2_FPS_1P = """grep -a 'Train' LOG | awk -F " " '{print $NF}' | awk 'END {print}'"""
IRV2_ACC_1P = """grep -a 'Acc@1' LOG | awk -F " " '{print $3}' | awk 'END {print}'"""

_ids = count(os.getpid() * 10 + 5)


class FolderRun:
    """A per-model script run from ``cwd``; its log, summary.json and CaseName.log."""

    def __init__(self, net, script, *args, cwd=ROOT):
        self.net, self.id = net, next(_ids)
        self.dir = launcher_output(net) / str(self.id)
        path = os.path.relpath(ROOT / "models" / net / "test" / script, cwd)
        env = launcher_env(dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"), net)
        self.bg = Background(["bash", path, *args, f"--device_id={self.id}", "--device=cpu", "--workers=0"],
                             env=env, cwd=cwd)

    def done(self):
        proc = self.bg.result(600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        self.stdout, self.log = proc.stdout, self.dir / f"train_{self.id}.log"
        # main.py's --output-dir: the folder itself, eval/ for evaluation, perf/ for performance runs
        found = [d for d in (self.dir / "eval", self.dir / "perf", self.dir) if (d / "summary.json").is_file()]
        self.summary = json.loads((found[0] / "summary.json").read_text())
        return self

    def pipe(self, pipeline, device="cpu"):
        """The pipeline verbatim, on this run's log: its output lines as numbers."""
        command = pipeline.replace("LOG", shlex.quote(str(self.log))).replace("DEVICE", device)
        out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True).stdout.split()
        return [float(v) for v in out]  # every value a number

    def case(self, kind):
        logs = list(self.dir.glob(f"*_{kind}.log"))
        assert len(logs) == 1, logs
        return dict(line.split(" = ", 1) for line in logs[0].read_text().splitlines())

    def cleanup(self):
        self.bg.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


SMALL = {"googlenet": ["--image_size=32", "--batch_size=4"],
         "inception_resnet_v2": ["--image_size=75", "--batch_size=6"],
         "alexnet": ["--image_size=63", "--batch_size=16"]}


def _started(request, net, script, *args, cwd=ROOT):
    run = FolderRun(net, script, *SMALL[net], *args, cwd=cwd)
    request.addfinalizer(run.cleanup)
    return run


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    """12 train / 6 val images: the real networks, a few steps each."""
    return write_image_folder(tmp_path_factory.mktemp("small"), train_per_class=4, val_per_class=2)


START_AHEAD = ("googlenet_full_1p", "googlenet_perf_8p", "irv2_full_1p", "irv2_full_8p",
               "alexnet_full_8p")  # conftest's _start_ahead


@pytest.fixture(scope="module")
def googlenet_full_1p(request, small_folder):  # from the folder, as its users run it
    return _started(request, "googlenet", "train_full_1p.sh", f"--data_path={small_folder}", "--epochs=2",
                    "--print-freq=1", cwd=ROOT / "models" / "googlenet")


@pytest.fixture(scope="module")
def googlenet_perf_8p(request, small_folder):
    return _started(request, "googlenet", "train_performance_8p.sh", f"--data_path={small_folder}",
                    "--rank_size=2", "--stop_step_num=4", "--print-freq=1")


@pytest.fixture(scope="module")
def irv2_full_1p(request, small_folder):
    return _started(request, "inception_resnet_v2", "train_full_1p.sh", f"--data_path={small_folder}",
                    "--epochs=1", "--print-freq=1")


@pytest.fixture(scope="module")
def irv2_full_8p(request, small_folder):
    return _started(request, "inception_resnet_v2", "train_full_8p.sh", f"--data_path={small_folder}",
                    "--epochs=1", "--rank_size=2", "--print-freq=1", cwd=ROOT / "models" / "inception_resnet_v2")


@pytest.fixture(scope="module")
def alexnet_full_8p(request, image_folder):  # the done-when command, from the folder
    return _started(request, "alexnet", "train_full_8p.sh", "--rank_size=2", "--epochs=1", "--batch_size=16",
                    f"--data_path={image_folder}", cwd=ROOT / "models" / "alexnet")


def _close(a, b, digits):
    assert b is not None and abs(a - b) <= 0.5 * 10 ** -digits + 1e-9, (a, b)


def _top_level_pipelines(run, *, loss=True):
    s = run.summary
    _close(run.pipe(TOP_FPS)[-1], s["fps"], 1)
    _close(run.pipe(TOP_ACC)[-1], s["final_acc1"], 3)
    if loss:
        _close(run.pipe(TOP_LOSS)[-1], s["step_lines"]["last_loss"], 4)
        _close(run.pipe(EVAL_LOSS)[-1], s["final_val_loss"], 4)


def _closing(run, kind, network_batch):
    case = run.case(kind)
    assert case["CaseName"] == f"{network_batch}_{kind}" and case["Network"] == network(run.net)
    m = re.search(r"Final Performance images/sec : (\S+)\nFinal Train Accuracy : (\S+)\n"
                  r"E2E Training Duration sec : (\d+)\n\Z", run.stdout)
    assert m and (case["ActualFPS"], case["TrainAccuracy"]) == m.groups()[:2]
    return case


def test_googlenet_folder_speaks_torchvision_references(googlenet_full_1p):
    run = googlenet_full_1p.done()
    s, text = run.summary, run.log.read_text()
    progress = [line for line in text.splitlines() if line.startswith(("Epoch:", "Test:"))]
    assert progress and not any("Acc@1" in line for line in progress)  # only the summaries carry it
    assert all(" * Acc@1 " in line for line in text.splitlines() if "Acc@1" in line)
    assert re.search(r"^Epoch: \[1\]  \[\d/3\]  eta: \d+:\d\d:\d\d  lr: \S+  img/s: [\d.]+  loss: [\d.]+ \([\d.]+\)",
                     text, re.M)
    _close(max(run.pipe(TV_FPS)), s["step_lines"]["img_per_s_max"], 1)
    _close(run.pipe(TV_LOSS)[-1], s["final_val_loss"], 4)  # its last loss: line is the last Test: line
    _close(max(run.pipe(TV_ACC)), s["best_acc1"], 3)
    _top_level_pipelines(run, loss=False)  # FPS@all and * Acc@1 lines as everywhere
    case = _closing(run, "acc", "Googlenet_ID0447_for_PyTorch_bs4_1p")
    assert float(case["ActualLoss"]) == s["step_lines"]["last_loss"]  # the last step line's loss:


def test_googlenet_folder_performance_8p(googlenet_perf_8p):
    run = googlenet_perf_8p.done()
    s = run.summary
    assert s["world_size"] == 2 and s["step_lines"]["count"] == 4
    _close(run.pipe(TV_FPS_PERF)[-1], s["step_lines"]["img_per_s_mean_from_third"], 3)
    _close(run.pipe(TV_LOSS)[-1], s["step_lines"]["last_loss"], 4)
    _close(run.pipe(TOP_FPS)[-1], s["fps"], 1)
    _closing(run, "perf", "Googlenet_ID0447_for_PyTorch_bs4_2p")


def test_inception_resnet_v2_folder_1p(irv2_full_1p):
    run = irv2_full_1p.done()
    s = run.summary
    assert re.search(r"^Train: batch_size: 6 \* FPS@all [\d.]+$", run.log.read_text(), re.M)
    _close(run.pipe(IRV2_FPS_1P)[-1], s["fps"], 1)
    _close(run.pipe(IRV2_ACC_1P)[-1], s["final_acc1"], 3)
    _top_level_pipelines(run)
    _closing(run, "acc", "InceptionResNetV2_ID1779_for_PyTorch_bs6_1p")


def test_inception_resnet_v2_folder_8p(irv2_full_8p):
    run = irv2_full_8p.done()
    s, text = run.summary, run.log.read_text()
    assert re.search(r"^\[cpu id: 0 \] \[batch_size: 3 \] \* FPS@all [\d.]+$", text, re.M)  # the real device
    assert re.search(r"^\[cpu id: 0 \] \[AVG-ACC\] \* Acc@1 [\d.]+ Acc@5 [\d.]+$", text, re.M)
    assert "npu" not in text.replace("--device", "")
    _close(run.pipe(IRV2_FPS_8P)[-1], s["fps"], 1)
    _close(run.pipe(IRV2_ACC_8P)[-1], s["final_acc1"], 3)
    _top_level_pipelines(run)
    case = _closing(run, "acc", "InceptionResNetV2_ID1779_for_PyTorch_bs6_2p")
    assert case["TrainAccuracy"] == f"{s['final_acc1']:.3f}"


def test_alexnet_folder_8p_from_its_folder(alexnet_full_8p):
    run = alexnet_full_8p.done()
    assert "AlexNet_ID2663_for_PyTorch_bs16_2p_acc.log" in os.listdir(run.dir)
    assert re.search(r"^Test: \[\d/\d\]  Time [\d.]+ \([\d.]+\)  Loss [\d.]+ \([\d.]+\)  Acc@1 ", run.log.read_text(),
                     re.M)
    _top_level_pipelines(run)
    case = _closing(run, "acc", "AlexNet_ID2663_for_PyTorch_bs16_2p")
    assert case["RankSize"] == "2" and case["BatchSize"] == "16"
    assert run.summary["arch"] == "alexnet" and run.summary["world_size"] == 2
