"""Flags, aliases and precedence: command line > demo profile > recipe."""

from types import SimpleNamespace

import pytest

from classify.resolve import build_config
from classify.errors import UserError
from main import get_args_parser


def cfg(*argv, world_size=1, local_world=1):
    """The resolved config, flattened (every field at one level: what the checkpoint's ``args`` holds)."""
    return SimpleNamespace(**build_config(get_args_parser().parse_args(list(argv)), world_size, local_world).flat())


def test_defaults_are_googlenet_modelzoo_1p():
    c = cfg("/data")
    assert (c.arch, c.recipe, c.batch_size, c.lr, c.epochs, c.seed) == ("googlenet", "googlenet_modelzoo", 512,
                                                                         0.1, 90, 1234)
    assert (c.lr_scheduler, c.recipe_opt_level, c.loss_scale) == ("step", "O1", 1024.0)


@pytest.mark.parametrize("argv", [
    ["/d", "-a", "vgg16"], ["--data", "/d", "--arch", "vgg16"], ["--data_path=/d", "--model=vgg16"],
    ["--data-path", "/d", "--backbone", "vgg16"], ["--data_dir=/d", "--arch=vgg16"],
])
def test_data_and_arch_aliases(argv):
    c = cfg(*argv)
    assert c.data == "/d" and c.arch == "vgg16" and c.recipe == "vgg16_modelzoo"


@pytest.mark.parametrize("flag,field,value,expected", [
    ("--learning-rate", "lr", "0.3", 0.3), ("--lr", "lr", "0.3", 0.3),
    ("--mom", "momentum", "0.8", 0.8), ("--momentum", "momentum", "0.8", 0.8),
    ("--wd", "weight_decay", "5e-4", 5e-4), ("--weight-decay", "weight_decay", "5e-4", 5e-4),
    ("--weight_decay", "weight_decay", "5e-4", 5e-4),
    ("--epochs", "epochs", "7", 7), ("--epoch", "epochs", "7", 7), ("--max_epoch", "epochs", "7", 7),
    ("-b", "batch_size", "64", 64), ("--batch-size", "batch_size", "64", 64),
    ("--label-smoothing", "label_smoothing", "0.2", 0.2), ("--label_smooth_factor", "label_smoothing", "0.2", 0.2),
    ("--lr-scheduler", "lr_scheduler", "cosine", "cosine"), ("--lr_scheduler", "lr_scheduler", "cosine", "cosine"),
    ("--lr-epochs", "lr_epochs", "10,20", (10, 20)), ("--lr_epochs", "lr_epochs", "10,20", (10, 20)),
    ("--lr-gamma", "lr_gamma", "0.5", 0.5), ("--lr_gamma", "lr_gamma", "0.5", 0.5),
    ("--warmup-epochs", "warmup_epochs", "2", 2.0), ("--seed", "seed", "3", 3),
    ("-p", "print_freq", "5", 5), ("--print-freq", "print_freq", "5", 5), ("--log_interval", "print_freq", "5", 5),
    ("--ckpt-interval", "ckpt_interval", "100", 100), ("--ckpt_interval", "ckpt_interval", "100", 100),
    ("--output-dir", "output_dir", "o", "o"), ("--ckpt_path", "output_dir", "o", "o"),
    ("--log_path", "output_dir", "o", "o"), ("--device-id", "device_id", "3", 3), ("--gpu", "device_id", "3", 3),
    ("--device_id", "device_id", "3", 3), ("--opt-level", "opt_level", "O2", "O2"),
    ("--apex-opt-level", "opt_level", "o1", "O1"), ("--loss-scale", "loss_scale", "128", 128.0),
    ("--loss_scale_value", "loss_scale", "dynamic", None), ("-j", "workers", "3", 3),
    ("--image-size", "image_size", "96", 96), ("--val-resize", "val_resize", "300", 300),
    ("--num-classes", "num_classes", "10", 10), ("--num_classes", "num_classes", "10", 10),
    ("--stop-step-num", "stop_step_num", "50", 50), ("--resume", "resume", "x.pth", "x.pth"),
])
def test_flag_aliases_override_recipe(flag, field, value, expected):
    value_of = getattr(cfg("/d", flag, value), field)
    assert (str(value_of) if field == "output_dir" else value_of) == expected


def test_flags_with_equals_and_switches():
    c = cfg("--data=/d", "--amp", "--evaluate", "--dummy", "--label_smooth=0", "--pretrained")
    assert c.amp and c.evaluate and c.data_kind == "dummy" and c.label_smoothing == 0.0
    assert c.pretrained == "torchvision"
    assert cfg("/d", "--apex").amp
    assert cfg("/d", "-a", "vgg16", "--label_smooth", "1").label_smoothing == 0.1


def test_recipe_selection_and_values():
    c = cfg("/d", "--recipe", "googlenet_mindspore")
    assert (c.arch, c.lr_scheduler, c.lr_epochs, c.lr_gamma, c.warmup_epochs) == (
        "googlenet", "exponential", (70, 140, 210, 280), 0.3, 5)
    assert c.color_jitter == 0.4 and c.label_smoothing == 0.1 and c.per_device_batch == 256
    irv2 = cfg("/d", "-a", "inception_resnet_v2")
    assert (irv2.image_size, irv2.val_resize, irv2.mean, irv2.batch_size) == (299, 342, (0.5, 0.5, 0.5), 192)


def test_batch_split_over_devices():
    c = cfg("/d", "-a", "alexnet", "-b", "64", world_size=2, local_world=2)
    assert (c.batch_size, c.per_device_batch) == (64, 32)
    c = cfg("/d", "-a", "alexnet", "--per_batch_size", "16", world_size=4, local_world=4)
    assert (c.batch_size, c.per_device_batch) == (64, 16)
    c = cfg("/d", "-a", "alexnet", world_size=8, local_world=8)  # the seed's 8p values
    assert (c.batch_size, c.per_device_batch, c.lr) == (1024, 128, 0.04)


def test_demo_profile_applies_only_without_data():
    from classify.data.demo import DEMO_PROFILE

    demo = cfg("-a", "alexnet")
    assert demo.data_kind == "demo" and demo.epochs == DEMO_PROFILE["epochs"]
    assert demo.image_size == max(DEMO_PROFILE["image_size"], 63)
    assert cfg("-a", "alexnet", "--epochs", "1").epochs == 1  # a flag still wins
    assert cfg("-a", "inception_resnet_v2").image_size >= 75
    # The demo's batch is a changed batch like -b: the recipe lr follows it linearly.
    assert demo.batch_size == DEMO_PROFILE["batch_size"]
    assert demo.lr == pytest.approx(0.01 * DEMO_PROFILE["batch_size"] / 128)
    assert cfg("-a", "googlenet").lr == pytest.approx(0.1 * DEMO_PROFILE["batch_size"] / 512)
    assert cfg("-a", "alexnet", "--lr", "0.02").lr == 0.02


@pytest.mark.parametrize("argv,match", [
    (["-a", "resnet9000"], "unknown arch 'resnet9000'"),
    (["--recipe", "nope"], "unknown recipe 'nope'"),
    (["-a", "vgg16", "--recipe", "alexnet_modelzoo"], "is for alexnet, not vgg16"),
    (["--epochs", "-1"], "--epochs must be > 0"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--lr", "-0.1"], "--lr must be > 0"),
    (["--image-size", "16", "-a", "alexnet"], "too small for alexnet"),
    (["--lr-scheduler", "poly"], "unknown --lr-scheduler"),
    (["--opt-level", "O7"], "unknown --opt-level"),
    (["--loss-scale", "abc"], "--loss-scale must be a number"),
    (["--label_smooth", "2"], "--label_smooth must be 0 or 1"),
    (["--aux-logits", "-a", "vgg16"], "--aux-logits is not an option of vgg16"),
    (["--val-resize", "100", "--image-size", "224"], "smaller than --image-size"),
])
def test_bad_values(argv, match):
    with pytest.raises(UserError, match=match):
        cfg("/d", *argv)


def test_batch_not_divisible():
    with pytest.raises(UserError, match="does not divide over 3 devices"):
        cfg("/d", "-b", "64", world_size=3, local_world=3)


def test_parse_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        get_args_parser().parse_args(["--epochs", "ten"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "invalid int value: 'ten'" in err and len(err.splitlines()) == 1


def test_lr_follows_a_changed_batch_linearly():
    assert cfg("/d", "-a", "alexnet", "-b", "64").lr == pytest.approx(0.01 * 64 / 128)
    assert cfg("/d", "-a", "alexnet", "-b", "64", "--lr", "0.3").lr == 0.3  # an explicit lr wins
    assert cfg("/d", "-a", "alexnet", "-b", "64", world_size=2, local_world=2).lr == pytest.approx(0.04 * 64 / 1024 * 8 / 8)


def test_device_list_with_one_id_selects_that_device():
    assert cfg("/d", "--device-list", "3").device_id == 3
    assert cfg("/d", "--device_list", "0,1").device_id is None  # several: main_8p.py's, one worker each
    assert cfg("/d", "--device-list", "2", "--device-id", "1").device_id == 1  # --device-id wins
    with pytest.raises(UserError, match="--device-list 'x' is not a comma-separated list"):
        cfg("/d", "--device-list", "x")


def test_is_distributed_1_launches_one_worker_per_device(monkeypatch):
    import main

    parse = get_args_parser().parse_args
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert main._wants_launcher(parse(["/d", "--is_distributed", "1"]))
    assert not main._wants_launcher(parse(["/d", "--is_distributed", "0"]))
    assert main._wants_launcher(parse(["/d", "--device-list", "0,1"]))
    assert not main._wants_launcher(parse(["/d", "--device-list", "1"]))
    monkeypatch.setenv("LOCAL_RANK", "0")  # a torchrun worker never launches again
    assert not main._wants_launcher(parse(["/d", "--is_distributed", "1"]))


def test_resolved_config_has_shape_and_plain_values(tmp_path):
    import json

    c = build_config(get_args_parser().parse_args(["/d", "-a", "vgg16", "--output-dir", str(tmp_path)]))
    assert (c.data.path, c.optim.batch_size, c.precision.recipe_opt_level, c.loop.print_freq) == ("/d", 256, "O2", 10)
    assert c.output.output_dir == tmp_path
    nested = json.loads(json.dumps(c.to_dict()))  # config.json: plain values only
    assert set(nested) >= {"arch", "data", "optim", "precision", "loop", "output"}
    assert nested["optim"]["lr"] == c.optim.lr and nested["output"]["output_dir"] == str(tmp_path)
    flat = c.flat()  # the checkpoint's args, one level
    assert flat["data"] == "/d" and flat["image_size"] == 224 and flat["lr"] == c.optim.lr
    with pytest.raises(Exception):  # frozen
        c.optim.lr = 1.0
