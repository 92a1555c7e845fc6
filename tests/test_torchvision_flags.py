"""torchvision references' command lines (docs/torchvision-flags.md): their flags with their
meaning, no prefix taken for another flag, ``--opt``, their scheduler names against
``torch.optim.lr_scheduler``, the EMA's buffers and the stuck-EMA note, and their recipe lines."""


import pytest
import torch

import main
from classify.checkpoint import load_checkpoint
from classify.cli import launcher_parser
from classify.ema import ModelEma, adjusted_decay, stuck_note
from classify.errors import UserError
from classify.resolve import build_config
from classify.schedules import build_scheduler
from tests import tinynet
from tests.conftest import run_in_process, tiny_args, train_in_process


def parse(*argv):
    return main.get_args_parser().parse_args(list(argv))


def config(*argv):
    return build_config(parse(*argv))


# ----------------------------------------------------------------------------- no prefix matching


def test_a_prefix_is_never_another_flag(capsys):
    args = parse("--opt", "adamw")  # was: ambiguous option: --opt could match --opt-level, ...
    assert args.opt == "adamw" and args.opt_level is None
    assert parse("--epoch", "3").epochs == 3  # a declared alias works
    for argv in (["--epo", "3"], ["--opt-lev", "O1"], ["--lr-sched", "steplr"], ["--model-ema-dec", "0.9"]):
        with pytest.raises(SystemExit) as e:
            parse(*argv)
        assert e.value.code == 2
        assert f"unrecognized arguments: {argv[0]}" in capsys.readouterr().err
    # the launcher leaves a prefix to the workers instead of taking it for its own flag
    launcher, rest = launcher_parser().parse_known_args(["--nproc", "2", "--dev", "cpu"])
    assert launcher.nproc_per_node is None and launcher.device == "auto" and rest == ["--nproc", "2", "--dev", "cpu"]


def test_the_tools_parsers_take_no_prefix():
    from tools import bench, export_onnx, plot, predict

    for parser in (bench.get_args_parser(), export_onnx.get_args_parser(), plot.get_args_parser(),
                   predict.get_args_parser()):
        assert parser.allow_abbrev is False, parser.prog


# ----------------------------------------------------------------------------- --opt


def _step(opt: str, **flags):
    """The optimizer that --opt builds, after two steps of tinynet on one batch."""
    from tests.test_levers import batch, parts_for

    cfg = config("-a", "tinynet", "--opt", opt, "--wd", "1e-4", *flags)
    torch.manual_seed(0)
    net = tinynet.build(4)
    parts = parts_for(net, opt=cfg.optim.opt, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
    images, target = batch(8)
    for _ in range(2):
        parts.optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(images.float() / 255), target)
        loss.backward()
        parts.optimizer.step()
    return parts.optimizer, net


@pytest.mark.parametrize("opt, cls, state_key, settings", [
    ("sgd", torch.optim.SGD, "momentum_buffer", dict(nesterov=False, momentum=0.9)),
    ("sgd_nesterov", torch.optim.SGD, "momentum_buffer", dict(nesterov=True, momentum=0.9)),
    ("rmsprop", torch.optim.RMSprop, "square_avg", dict(eps=0.0316, alpha=0.9, momentum=0.9)),
    ("adamw", torch.optim.AdamW, "exp_avg", dict(betas=(0.9, 0.999), eps=1e-8)),
])
def test_opt_builds_the_references_optimizer(opt, cls, state_key, settings):
    optimizer, net = _step(opt)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert {k: group[k] for k in settings} == settings and group["weight_decay"] == 1e-4
    assert state_key in optimizer.state[net[0].weight]
    sgd_weight = _step("sgd")[1][0].weight
    assert opt == "sgd" or not torch.equal(net[0].weight, sgd_weight)  # the optimiser really changes


def test_opt_values_are_checked():
    assert config("-a", "tinynet").optim.opt == "sgd"
    assert config("-a", "tinynet", "--opt", "AdamW").optim.opt == "adamw"  # torchvision lower-cases it
    with pytest.raises(UserError, match="unknown --opt 'adam'; choose one of sgd, sgd_nesterov, rmsprop, adamw"):
        config("--opt", "adam")
    with pytest.raises(UserError, match="needs a momentum > 0"):
        config("--opt", "sgd_nesterov", "--momentum", "0")


@pytest.mark.parametrize("opt", ["sgd_nesterov", "rmsprop", "adamw"])
def test_resume_keeps_each_optimizers_state(opt, image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    train_in_process(capsys, *tiny_args(str(image_folder), str(out), "--opt", opt, "--epochs", "1"))
    first = load_checkpoint(out / "checkpoint.pth.tar")
    log = train_in_process(capsys, *tiny_args(str(image_folder), str(out), "--opt", opt, "--epochs", "2",
                                             "--resume", "auto"))
    assert "=> resumed from" in log
    second = load_checkpoint(out / "checkpoint.pth.tar")
    assert second["epoch"] == 2 and second["args"]["opt"] == opt
    steps = first["optimizer"]["state"][0].get("step")
    if steps is not None:  # rmsprop/adamw count their steps: the resumed run went on from the saved count
        assert int(second["optimizer"]["state"][0]["step"]) == 2 * int(steps)
    # another --opt cannot continue this state: one line
    code, _, err = run_in_process(capsys, *tiny_args(str(image_folder), str(out), "--opt", "sgd", "--epochs", "3",
                                                     "--resume", "auto"))
    assert code != 0 and "holds the state of another optimizer" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- scheduler names


def _torch_reference(name, optimizer, *, epochs, warmup, method, step, gamma, lr_min):
    """torchvision references' scheduler, stepped once per epoch."""
    sched = torch.optim.lr_scheduler
    main_ = {"steplr": lambda: sched.StepLR(optimizer, step_size=step, gamma=gamma),
             "cosineannealinglr": lambda: sched.CosineAnnealingLR(optimizer, T_max=epochs - warmup, eta_min=lr_min),
             "exponentiallr": lambda: sched.ExponentialLR(optimizer, gamma=gamma)}[name]()
    if not warmup:
        return main_
    first = (sched.LinearLR(optimizer, start_factor=0.01, total_iters=warmup) if method == "linear" else
             sched.ConstantLR(optimizer, factor=0.01, total_iters=warmup))
    return sched.SequentialLR(optimizer, schedulers=[first, main_], milestones=[warmup])


@pytest.mark.parametrize("name", ["steplr", "cosineannealinglr", "exponentiallr"])
@pytest.mark.parametrize("warmup, method", [(0, None), (2, "linear"), (2, "constant")])
def test_scheduler_names_give_torchvisions_lr_every_epoch(name, warmup, method):
    epochs, steps, lr, lr_min = 9, 4, 0.5, 0.01
    flags = ["-a", "tinynet", "--lr", str(lr), "--epochs", str(epochs), "--lr-scheduler", name,
             "--lr-step-size", "3", "--lr-gamma", "0.7", "--lr-min", str(lr_min)]
    if warmup:
        flags += ["--lr-warmup-epochs", str(warmup)] + (["--lr-warmup-method", method] if method == "linear" else [])
    cfg = config(*flags)  # no method: torchvision's default warm-up (constant at 0.01 x lr)
    o, lv = cfg.optim, cfg.levers
    our_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    ours = build_scheduler(our_opt, name=o.lr_scheduler,
                           epochs=o.epochs, steps_per_epoch=steps, warmup_epochs=o.warmup_epochs, step=o.lr_step,
                           gamma=o.lr_gamma, warmup_method=lv.lr_warmup_method, warmup_decay=lv.lr_warmup_decay,
                           milestones=o.lr_epochs, min_factor=o.lr_min / o.lr)
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    ref = _torch_reference(name, ref_opt, epochs=epochs, warmup=warmup, method=method or "constant", step=3,
                           gamma=0.7, lr_min=lr_min)
    for epoch in range(epochs):
        theirs = ref_opt.param_groups[0]["lr"]
        for it in range(steps):  # ours steps every iteration; compare at the epoch's start ...
            mine = ours.get_last_lr()[0]
            if it == 0 or (name != "cosineannealinglr" and epoch >= warmup):  # ... and, step-wise, all epoch
                assert mine == pytest.approx(theirs, rel=1e-9, abs=1e-12), (epoch, it)
            our_opt.step()
            ours.step()
        ref_opt.step()
        ref.step()


# ----------------------------------------------------------------------------- the other flags


def test_weights_names_map_onto_pretrained():
    for name in ("IMAGENET1K_V1", "DEFAULT", "AlexNet_Weights.IMAGENET1K_V1"):
        assert config("-a", "alexnet", "--weights", name).output.pretrained == "torchvision"
    assert config("-a", "alexnet").output.pretrained is None
    for argv, message in ((["-a", "vgg16", "--weights", "IMAGENET1K_FEATURES"], r"only IMAGENET1K_V1 \(DEFAULT\)"),
                          (["-a", "vgg16", "--weights", "IMAGENET1K_V2"], "unknown --weights 'IMAGENET1K_V2'"),
                          (["-a", "inception_resnet_v2", "--weights", "DEFAULT"], "torchvision ships no weights"),
                          (["-a", "alexnet", "--weights", "DEFAULT", "--pretrained"], "pass one")):
        with pytest.raises(UserError, match=message):
            config(*argv)


def test_interpolation_backend_and_the_no_ops(capsys):
    cfg = config("-a", "tinynet", "--interpolation", "bilinear", "--backend", "PIL", "--use-v2",
                 "--transformer-embedding-decay", "0.0", "--cache-dataset", "--test-only", "--amp",
                 "--use-deterministic-algorithms", "--print-freq", "5", "--start-epoch", "0",
                 "--world-size", "1", "--dist-url", "env://", "--device", "cpu", "-j", "0")
    assert cfg.output.evaluate and cfg.precision.amp and cfg.levers.deterministic and cfg.loop.print_freq == 5
    with pytest.raises(UserError, match="resized bilinearly here"):
        config("--interpolation", "bicubic")
    with pytest.raises(UserError, match="unknown --backend 'cv2'"):
        config("--backend", "cv2")
    help_text = " ".join(main.get_args_parser().format_help().split())
    for flag in ("--use-v2", "--transformer-embedding-decay", "--backend"):
        assert f"{flag}" in help_text
    from classify.cli import SEED_NO_OPS, TORCHVISION_NO_OPS

    assert help_text.count("accepted, no effect") >= len(SEED_NO_OPS) + len(TORCHVISION_NO_OPS)


def test_every_torchvision_flag_is_declared():
    """The flags of torchvision's references/classification/train.py parser (as of torchvision 0.2x)."""
    theirs = ("--data-path --model --device -b --batch-size --epochs -j --workers --opt --lr --momentum --wd "
              "--weight-decay --norm-weight-decay --bias-weight-decay --transformer-embedding-decay "
              "--label-smoothing --mixup-alpha --cutmix-alpha --lr-scheduler --lr-warmup-epochs --lr-warmup-method "
              "--lr-warmup-decay --lr-step-size --lr-gamma --lr-min --print-freq --output-dir --resume --start-epoch "
              "--cache-dataset --sync-bn --test-only --auto-augment --ra-magnitude --augmix-severity --random-erase "
              "--amp --world-size --dist-url --model-ema --model-ema-steps --model-ema-decay "
              "--use-deterministic-algorithms --interpolation --val-resize-size --val-crop-size --train-crop-size "
              "--clip-grad-norm --ra-sampler --ra-reps --weights --backend --use-v2").split()
    ours = main.get_args_parser()._option_string_actions
    assert [flag for flag in theirs if flag not in ours] == []


# ----------------------------------------------------------------------------- EMA


def test_ema_averages_bn_statistics_and_follows_the_batch_counter():
    torch.manual_seed(0)
    net = tinynet.build(4)
    ema = ModelEma(net, decay=0.9, every=1)
    net.train()
    x = torch.randn(8, 3, 16, 16)
    for step in (1, 2, 3):
        net(x + step)  # BatchNorm's running stats and num_batches_tracked move
        before = {k: v.clone() for k, v in ema.module.state_dict().items()}
        ema.after_step(net, step)
    bn, ema_bn = net[1], ema.module[1]
    torch.testing.assert_close(ema_bn.running_mean, 0.9 * before["1.running_mean"] + 0.1 * bn.running_mean)
    torch.testing.assert_close(ema_bn.running_var, 0.9 * before["1.running_var"] + 0.1 * bn.running_var)
    assert int(ema_bn.num_batches_tracked) == int(bn.num_batches_tracked) == 3  # torch's EMA fn would give 1


def test_a_stuck_ema_is_named_with_a_decay_that_moves_it():
    # the references' defaults over a short run: 8 epochs x 25 steps, batch 32
    note = stuck_note(0.99998, every=32, global_batch=32, epochs=8, total_steps=200)
    assert note.startswith("=> --model-ema: decay 0.99998 every 32 steps") and "it will not move" in note
    suggested = float(note.split("--model-ema-decay ")[1].split()[0])
    adjusted = adjusted_decay(suggested, global_batch=32, every=32, epochs=8)
    assert adjusted ** (200 // 32) == pytest.approx(0.01, rel=1e-3)
    assert stuck_note(0.996, every=1, global_batch=32, epochs=8, total_steps=200) is None
    assert "--model-ema-steps N below 20" in stuck_note(0.9, every=32, global_batch=32, epochs=1, total_steps=20)


# ----------------------------------------------------------------------------- the references' recipe lines

# torchvision references/classification/README.md; shrunk only in data path, device, sizes,
# epochs and steps (the network: tinynet, after the real arch has resolved the same line)
RECIPES = {
    "alexnet_vgg": ["--model", "vgg16", "--lr", "1e-2"],
    "long": ["--opt", "sgd", "--lr", "0.5", "--lr-scheduler", "cosineannealinglr", "--lr-warmup-epochs", "5",
             "--lr-warmup-method", "linear", "--auto-augment", "ta_wide", "--epochs", "600", "--random-erase", "0.1",
             "--label-smoothing", "0.1", "--mixup-alpha", "0.2", "--cutmix-alpha", "1.0", "--weight-decay",
             "0.00002", "--norm-weight-decay", "0.0", "--train-crop-size", "176", "--model-ema",
             "--val-resize-size", "232", "--ra-sampler", "--ra-reps", "4"],
}
SHRINK = {"--epochs": "2", "--lr-warmup-epochs": "1", "--train-crop-size": "32", "--val-resize-size": "36"}


def _shrunk(line, arch):
    out = list(line)
    for i, token in enumerate(line[:-1]):
        if token in SHRINK:
            out[i + 1] = SHRINK[token]
        if token == "--model":
            out[i + 1] = arch
    return out if "--model" in line else ["--model", arch, *out]


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_the_references_recipe_lines_run(recipe, image_folder, tmp_path, capsys):
    line = RECIPES[recipe]
    real = config(*line)  # the real line resolves as written (the demo set: no data path)
    assert real.arch == (line[1] if line[0] == "--model" else real.arch)
    log = train_in_process(capsys, *tiny_args(str(image_folder), str(tmp_path), "--device", "cpu",
                                              *_shrunk(line, "tinynet"), "--epochs", "2"))
    ckpt = load_checkpoint(tmp_path / "checkpoint.pth.tar")
    assert ckpt["epoch"] == 2 and log.count(" * Acc@1 ") == 2
    args = ckpt["args"]
    if recipe == "long":
        assert (args["opt"], args["lr_scheduler"], args["auto_augment"], args["ra_reps"]) == (
            "sgd", "cosineannealinglr", "ta_wide", 4)
        assert args["model_ema"] and args["image_size"] == 32 and args["val_resize"] == 36
        assert log.count(" * EMA Acc@1 ") == 2
        assert "=> --model-ema: decay 0.99998 every 32 steps" in log  # a few steps: the EMA cannot move
    else:
        assert args["lr"] == 1e-2
