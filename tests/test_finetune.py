"""Fine-tuning (docs/own-data.md, "Fine-tuning"): --pretrained onto another class count leaves
the net's head fresh (every other key strict), a bare --pretrained downloads torchvision's
weights through its weights API (mocked here; offline: one line), -t, --freeze-backbone,
--backbone-lr-scale, the fine-tuning defaults, and exact resume of a fine-tuning run."""

import json
import signal

import pytest
import torch

import main
import models
from classify.checkpoint import load_checkpoint, load_model_weights
from classify.errors import CheckpointError
from classify.pretrained import load_pretrained, torchvision_weights_path
from classify.schema import BACKBONE_LR_SCALE
from tests import tinynet
from tests.conftest import tiny_args as tiny
from tests.conftest import train_in_process as train

# (arch, build kwargs, the head modules that start fresh)
HEADS = [
    ("alexnet", {}, ("classifier.6",)),
    ("vgg16", {}, ("classifier.6",)),
    ("googlenet", {}, ("fc",)),
    ("googlenet", {"aux_logits": True}, ("fc", "aux1.fc2", "aux2.fc2")),
    ("inception_resnet_v2", {}, ("classif",)),
    ("tinynet", {}, ("9",)),
]


def test_every_network_declares_its_head():
    """Each registered net's head names modules whose outputs are the classes."""
    for name in models.list_models():
        entry = models.get_model_entry(name)
        assert entry.head, f"{name} declares no head"
        kwargs = {option: True for option in entry.train_options}  # e.g. GoogLeNet's aux heads built
        model = models.create_model(name, num_classes=7, **kwargs)
        for head in entry.head:
            assert model.get_submodule(head).out_features == 7, (name, head)
        del model


@pytest.mark.parametrize("arch,kwargs,heads", HEADS, ids=[f"{a}{'-aux' if k else ''}" for a, k, _ in HEADS])
def test_head_replacement(arch, kwargs, heads):
    torch.manual_seed(0)
    model = models.create_model(arch, num_classes=10, **kwargs)
    own = model.state_dict()
    entry = models.get_model_entry(arch)
    fresh = {k: v.clone() for k, v in own.items() if entry.head_of(k) is not None}
    # An ImageNet file of this net: 1000-class heads (GoogLeNet's aux ones too, built or not), and
    # every other tensor different from the model's, so that a loaded key shows.
    file = {k: (v + 1) for k, v in own.items() if entry.head_of(k) is None}
    for head in entry.head:
        width = 1024 if arch == "googlenet" and head != "fc" else None
        key = f"{head}.weight"
        in_features = own[key].shape[1] if key in own else width
        if key in own or arch == "googlenet":
            file[key], file[f"{head}.bias"] = torch.randn(1000, in_features), torch.randn(1000)
    if arch == "googlenet" and not kwargs:  # the aux heads' other layers, as torchvision's file has them
        aux = models.create_model(arch, num_classes=10, aux_logits=True).state_dict()
        file.update({k: v for k, v in aux.items() if k.startswith("aux") and k not in file})
    state = {"state_dict": file, "arch": arch}

    swap = load_model_weights(model, state, path="w.pth", arch=arch, head="auto")
    assert swap is not None and swap.names == heads and (swap.old_classes, swap.new_classes) == (1000, 10)
    loaded = model.state_dict()
    for key, value in loaded.items():
        if entry.head_of(key) is not None:
            assert torch.equal(value, fresh[key]), key  # left as built: fresh
            assert value.shape[0] == 10
        else:
            assert torch.equal(value, file[key]), key  # loaded

    # strict as before for every other key, and for the head where it must load
    with pytest.raises(CheckpointError, match=r"has shape \(1000, .*model has \(10, .*check --num-classes"):
        load_model_weights(model, state, path="w.pth", arch=arch)  # -e / --resume: the head must fit
    some = next(k for k in file if entry.head_of(k) is None and not entry.is_optional_key(k))
    partial = {"state_dict": {k: v for k, v in file.items() if k != some}, "arch": arch}
    with pytest.raises(CheckpointError, match=f"does not fit {arch}: missing \\['{some}'\\]"):
        load_model_weights(model, partial, path="w.pth", arch=arch, head="auto")
    other = "vgg16" if arch != "vgg16" else "alexnet"
    with pytest.raises(CheckpointError, match=f"is a {other} checkpoint but --arch is {arch}; pass -a {other}"):
        load_model_weights(model, {**state, "arch": other}, path="w.pth", arch=arch, head="auto")


def test_same_class_count_loads_the_head_unless_fresh():
    model = tinynet.build(3)
    file = {k: v + 1 for k, v in tinynet.build(3).state_dict().items()}
    assert load_model_weights(model, {"state_dict": file}, path="w", arch="tinynet", head="auto") is None
    assert torch.equal(model.state_dict()["9.weight"], file["9.weight"])
    model = tinynet.build(3)
    before = model.state_dict()["9.weight"].clone()
    swap = load_model_weights(model, {"state_dict": file}, path="w", arch="tinynet", head="fresh")  # -t
    assert swap.names == ("9",) and (swap.old_classes, swap.new_classes) == (3, 3)
    assert torch.equal(model.state_dict()["9.weight"], before)


# ---------------------------------------------------------------- torchvision's weights

def test_bare_pretrained_downloads_through_torchvisions_weights_api(tmp_path, monkeypatch):
    from torchvision.models import AlexNet_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def fetch(url, dst, hash_prefix=None, progress=True):  # torch.hub's downloader, replaced
        calls.append((url, hash_prefix))
        torch.save({"features.0.bias": torch.arange(3.0)}, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fetch)
    state = load_pretrained("torchvision", "alexnet")
    path = torchvision_weights_path("alexnet")
    assert calls == [(AlexNet_Weights.DEFAULT.url, "7be5be79")]  # the checksum is checked: its sha256 prefix
    assert path.is_file() and path.parent == tmp_path / "torch" / "hub" / "checkpoints"  # the torch hub cache
    assert torch.equal(state["state_dict"]["features.0.bias"], torch.arange(3.0))
    assert state["arch"] == "alexnet" and state["torchvision"] is True
    assert torch.equal(load_pretrained("torchvision", "alexnet")["state_dict"]["features.0.bias"], torch.arange(3.0))
    assert len(calls) == 1  # the second time from the cache


def test_offline_says_where_to_put_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # conftest: every download fails, as offline
    path = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    message = (f"torchvision alexnet weights are not in the local cache and cannot be downloaded here; copy "
               f"alexnet-owt-7be5be79.pth to {path} or pass --pretrained PATH")
    with pytest.raises(CheckpointError) as e:
        load_pretrained("torchvision", "alexnet")
    assert str(e.value) == message


def test_a_download_that_fails_its_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def corrupt(url, dst, hash_prefix=None, progress=True):
        raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got "deadbeef")')

    monkeypatch.setattr(torch.hub, "download_url_to_file", corrupt)
    with pytest.raises(CheckpointError, match="fail their checksum"):
        load_pretrained("torchvision", "alexnet")


# ---------------------------------------------------------------- end to end, tinynet

@pytest.fixture(scope="module")
def five(tmp_path_factory):
    """A tinynet "pretrained" on 5 classes, every tensor distinct from a fresh build's."""
    path = tmp_path_factory.mktemp("pretrained") / "five.pth.tar"
    torch.manual_seed(1)
    net = tinynet.build(5)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(123)
    torch.save({"state_dict": net.state_dict(), "arch": "tinynet"}, path)
    return path


def _config(out):
    return json.loads((out / "config.json").read_text())


def test_fine_tuning_onto_other_classes(image_folder, five, tmp_path, capsys):
    out = tmp_path / "ft"
    log = train(capsys, *tiny(image_folder, out, "--pretrained", five, "--stop-step-num", "2"))
    assert (f"=> pretrained weights from {five}: every layer loaded except the head 9 (5 -> 3 classes), "
            "which starts fresh") in log.splitlines()
    assert ("=> fine-tuning defaults (for what no flag set): 10 epochs, cosine lr, no warm-up, pretrained layers "
            f"at {BACKBONE_LR_SCALE:g} x the head's lr (--backbone-lr-scale)") in log.splitlines()
    optim = _config(out)["optim"]
    assert (optim["epochs"], optim["lr_scheduler"], optim["warmup_epochs"]) == (10, "cosine", 0.0)
    groups = load_checkpoint(out / "checkpoint.pth.tar")["optimizer"]["param_groups"]
    assert BACKBONE_LR_SCALE == 1.0 and len(groups) == 1  # by default every layer at the head's lr
    assert groups[0]["initial_lr"] == pytest.approx(tinynet.RECIPE.lr_1p)  # the recipe's lr

    # flags win: --epochs, --lr-scheduler, --backbone-lr-scale
    out = tmp_path / "flags"
    log = train(capsys, *tiny(image_folder, out, "--pretrained", five, "--epochs", "1", "--lr-scheduler", "step",
                              "--backbone-lr-scale", "0.5", "--stop-step-num", "1"))
    assert "=> fine-tuning defaults (for what no flag set): no warm-up" in log
    optim = _config(out)["optim"]
    assert (optim["epochs"], optim["lr_scheduler"]) == (1, "step")
    groups = load_checkpoint(out / "checkpoint.pth.tar")["optimizer"]["param_groups"]
    assert len(groups) == 2 and groups[1]["initial_lr"] == pytest.approx(0.5 * groups[0]["initial_lr"])
    assert groups[0]["initial_lr"] == pytest.approx(tinynet.RECIPE.lr_1p)  # the head at the recipe's lr
    assert len(groups[0]["params"]) == 2  # the head's weight and bias


def test_seeds_fine_tuning_flag(image_folder, tmp_path, capsys):
    three = tmp_path / "three.pth"
    torch.save({"state_dict": tinynet.build(3).state_dict(), "arch": "tinynet"}, three)
    log = train(capsys, *tiny(image_folder, tmp_path / "same", "--pretrained", three, "--stop-step-num", "1"))
    assert f"=> pretrained weights from {three}: every layer loaded" in log.splitlines()
    assert "fine-tuning defaults" not in log
    log = train(capsys, *tiny(image_folder, tmp_path / "t", "-t", "--pretrained", three, "--stop-step-num", "1"))
    assert "every layer loaded except the head 9 (3 -> 3 classes), which starts fresh" in log


def test_freeze_backbone_trains_the_head_only(image_folder, five, tmp_path, capsys):
    pretrained = load_checkpoint(five)["state_dict"]
    for flags, frozen in ((["--freeze-backbone"], True), ([], False)):
        out = tmp_path / str(frozen)
        log = train(capsys, *tiny(image_folder, out, "--pretrained", five, "--epochs", "2", *flags))
        if frozen:
            assert "only the head trains (--freeze-backbone)" in log
        state = load_checkpoint(out / "checkpoint.pth.tar")
        same = [k for k in pretrained if not k.startswith("9.") and torch.equal(state["state_dict"][k], pretrained[k])]
        backbone = [k for k in pretrained if not k.startswith("9.")]
        if frozen:  # weights, BN running statistics and num_batches_tracked: bit-identical after 10 steps
            assert same == backbone
            assert [len(g["params"]) for g in state["optimizer"]["param_groups"]] == [2]
        else:  # the check can fail: without the flag the backbone and its BN statistics move
            assert not same


def test_finetune_flags_need_weights(image_folder, tmp_path, capsys):
    for flags, message in ((["--freeze-backbone"], "--freeze-backbone needs pretrained weights to start from; "
                            "add --pretrained PATH"),
                           (["--backbone-lr-scale", "2", "--pretrained", "x"], "--backbone-lr-scale is a factor in "
                            "[0, 1], got 2"),
                           (["--tta", "ten"], "unknown --tta 'ten'; choose one of none, flip")):
        code = main.main([str(a) for a in tiny(image_folder, tmp_path, *flags)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err


@pytest.mark.slow  # the slow tier (-m slow): three real runs and a SIGKILL
def test_fine_tuning_run_resumes_exactly_after_sigkill(image_folder, five, tmp_path, run_main):
    """A fine-tuning run (fresh head, two lrs, EMA, mixup, progressive resize) killed with SIGKILL
    mid-run and continued with the same command ends bit-identical to one that ran straight through."""
    from tests.test_reliability import start, wait_for_line

    flags = [image_folder, "-a", "tinynet", "-b", "8", "--workers", "0", "-p", "1", "--pretrained", five,
             "--epochs", "3", "--model-ema", "--model-ema-steps", "1", "--mixup-alpha", "0.2",
             "--progressive-resize", "24:32", "--ckpt-interval", "2"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = start(flags, killed)
    wait_for_line(proc, "saved checkpoint at epoch 1 step 2")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ckpt = load_checkpoint(killed / "checkpoint.pth.tar")
    assert (ckpt["epoch"], ckpt["step"]) < (3, 0)
    resumed = run_main(*flags, "--resume", "auto", "--output-dir", killed)
    assert resumed.returncode == 0, resumed.stderr
    assert f"(epoch {ckpt['epoch']}, step {ckpt['step']})" in resumed.stdout
    done = run_main(*flags, "--output-dir", straight)
    assert done.returncode == 0, done.stderr
    a, b = load_checkpoint(straight / "checkpoint.pth.tar"), load_checkpoint(killed / "checkpoint.pth.tar")
    for key in ("state_dict", "state_dict_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


def test_check_of_a_bare_pretrained_not_in_the_cache(image_folder, tmp_path, monkeypatch, capsys):
    """The launchers' pre-flight (--check) does not refuse torchvision's weights that the run would
    download; it says so."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code = main.main(["--check", str(image_folder), "-a", "alexnet", "--pretrained", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    path = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert f"{path} (not in the cache: downloaded when the run starts) (--pretrained)" in out
